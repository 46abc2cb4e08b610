"""The Tokenizer on SmolLM2's real vocabulary: ids and offsets equal to HF tokenizers, lossless decode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.tokenize import TokenizerError

FAMILIES = ["english", "code", "accented-latin", "cjk", "cyrillic", "arabic", "emoji"]


def _first_difference(ours: list, theirs: list) -> str:
    i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    return f"first difference at {i}: ours {ours[i:i + 5]} vs HF {theirs[i:i + 5]} (lengths {len(ours)}, {len(theirs)})"


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_ids_equal_hf_on_real_text(smollm2, hf_smollm2_digits, real_text, family):
    text = real_text[family]
    assert len(text.encode("utf-8")) > (100_000 if family == "emoji" else 600_000)
    ours, theirs = smollm2.encode(text), hf_smollm2_digits.encode(text).ids
    assert ours == theirs, _first_difference(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["english", "code", "cjk", "emoji"])
def test_offsets_and_tokens_equal_hf(smollm2, hf_smollm2_digits, real_text, family):
    text = real_text[family][:200_000]
    ours, theirs = smollm2.encode_with_offsets(text), hf_smollm2_digits.encode(text)
    assert ours.ids == theirs.ids, _first_difference(ours.ids, theirs.ids)
    assert ours.tokens == theirs.tokens
    assert ours.offsets == theirs.offsets, _first_difference(ours.offsets, theirs.offsets)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["english", "code", "cyrillic"])
def test_gpt2_split_equals_transformers_gguf_tokenizer(smollm2_gpt2_split, hf_smollm2, real_text, family):
    """With pre-tokenizer 'gpt2' we cut exactly as transformers' GGUF loader does."""
    text = real_text[family]
    ours, theirs = smollm2_gpt2_split.encode(text), hf_smollm2.encode(text).ids
    assert ours == theirs, _first_difference(ours, theirs)


def test_digit_splitting_is_where_transformers_gguf_loader_differs(smollm2, smollm2_gpt2_split, hf_smollm2):
    text = "x =  1  22"  # whitespace runs before digits: 'ĠĠ' + '1' vs 'Ġ' + 'Ġ1'->'Ġ','1'
    assert smollm2_gpt2_split.encode(text) == hf_smollm2.encode(text).ids
    assert smollm2.encode(text) != hf_smollm2.encode(text).ids
    assert smollm2.decode(smollm2.encode(text)) == text


EDGE_CASES = [
    "",
    " ",
    "      ",
    "\n\n\t \u3000 \n",
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "a<|im_end|><|im_end|>b <|endoftext|> <|im_start",  # adjacent, spaced, and a cut-off special
    "<filename>x.py<file_sep><jupyter_start><empty_output>",
    "Supercalifragilisticexpialidocious" * 300,  # one very long word (heap merge path)
    "a" * 5000,
    "9" * 1000 + " " + "١٢٣" + "½",  # digits of several scripts
    "don't I'LL we've 'S",  # contractions, case-sensitive in GPT-2's regex
    "e\u0301 \u00e9 ﬁ ＡＢＣ",  # combining mark, precomposed, ligature, full-width: no normalizer
    "👩‍👩‍👧‍👦 🇫🇷 👍🏽",
    "\x00\x01\x7f\x80 \ufeff\u200b\u200d",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_equal_hf(smollm2, hf_smollm2_digits, text):
    ours, theirs = smollm2.encode_with_offsets(text), hf_smollm2_digits.encode(text)
    assert (ours.ids, ours.offsets) == (theirs.ids, theirs.offsets)
    assert smollm2.encode(text) == theirs.ids
    assert smollm2.decode(ours.ids) == text


def test_special_tokens_are_single_ids(smollm2):
    ids = smollm2.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == smollm2.token_to_id("<|im_start|>") == 1
    assert ids[-1] == smollm2.token_to_id("<|im_end|>") == smollm2.eos_id == 2
    assert smollm2.decode(ids, skip_special=True) == "user\nhi"


def test_gguf_facts(smollm2, smollm2_metadata, hf_smollm2):
    assert smollm2.vocab_size == len(smollm2_metadata["tokenizer.ggml.tokens"]) == hf_smollm2.get_vocab_size()
    assert (smollm2.bos_id, smollm2.eos_id) == (1, 2)
    assert smollm2.id_to_token(19556) == hf_smollm2.id_to_token(19556)
    assert smollm2.encode("hi", add_special=True) == smollm2.encode("hi", add_special=False)  # add_bos_token false


def test_add_bos_token_honoured(smollm2_metadata):
    from llmkit.tokenize import from_gguf_metadata

    tok = from_gguf_metadata({**smollm2_metadata, "tokenizer.ggml.add_bos_token": True})
    assert tok.encode("hi") == [tok.bos_id, *tok.encode("hi", add_special=False)]
    enc = tok.encode_with_offsets("hi")
    assert enc.ids[0] == tok.bos_id and enc.offsets[0] == (0, 0)


@pytest.mark.parametrize("text", ["abc\ud800", "\udfff", "ok " * 10 + "\ud83d"])
def test_lone_surrogates_rejected(smollm2, text):
    with pytest.raises(TokenizerError, match="lone surrogate"):
        smollm2.encode(text)


def test_bad_ids_rejected(smollm2):
    with pytest.raises(TokenizerError, match="out of range"):
        smollm2.decode([0, 49152])
    with pytest.raises(TokenizerError, match="must be str"):
        smollm2.encode(b"bytes")


def test_bytes_missing_from_vocab_are_dropped_like_hf(smollm2, hf_smollm2_digits):
    """SmolLM2 has no token for bytes such as 0x04 or 0xF1 (U+40000..U+7FFFF); HF drops them, so do we."""
    text = "a\x04b \U00046131c"
    assert smollm2.encode(text) == hf_smollm2_digits.encode(text).ids
    assert smollm2.decode(smollm2.encode(text)) != text


def _encodable(tok) -> st.SearchStrategy[str]:
    """Random Unicode text whose every byte has a token (SmolLM2 lacks 21 of the 256)."""
    missing = {b for b in range(256) if tok.model.byte_ids[b] < 0}
    ok = st.characters(exclude_categories=["Cs"]).filter(lambda c: not missing & set(c.encode("utf-8")))
    return st.text(ok, max_size=60)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decode_encode_round_trip(smollm2, hf_smollm2_digits, data):
    text = data.draw(_encodable(smollm2))
    ids = smollm2.encode(text)
    assert smollm2.decode(ids) == text
    assert ids == hf_smollm2_digits.encode(text).ids


def test_encode_batch_over_processes_equals_encode(smollm2, real_text):
    texts = real_text["english"][:100_000].split("\n")
    assert smollm2.encode_batch(texts, processes=2) == [smollm2.encode(t) for t in texts]


def test_parse_special_false_encodes_specials_as_text(smollm2, hf_smollm2_digits):
    """HF's ``encode_special_tokens = True`` is the same switch."""
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_str(hf_smollm2_digits.to_str())
    hf.encode_special_tokens = True
    text = "<|im_start|>user\nhi<|im_end|> <|endoftext|>"
    ids = smollm2.encode(text, parse_special=False)
    assert ids == hf.encode(text).ids
    assert 2 not in ids and smollm2.decode(ids) == text

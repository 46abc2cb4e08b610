"""ByT5 byte tokens: ids and decoding equal to transformers' ByT5Tokenizer."""

from __future__ import annotations

import pytest

from llmkit.tokenize.byt5 import byt5_tokenizer


@pytest.fixture(scope="module")
def hf_byt5():
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


@pytest.fixture(scope="module")
def byt5():
    return byt5_tokenizer()


CASES = [
    "",
    "a <extra_id_0> b <extra_id_124>",
    "a  </s>  b <pad>\n c\t<unk>\td",  # pad, eos and unk take the whitespace around them
    "hé 日本 \x00\x7f 🇫🇷 👩‍👩‍👧",
]


@pytest.mark.parametrize("text", CASES)
def test_ids_and_decode_equal_transformers(byt5, hf_byt5, text):
    ids = byt5.encode(text)
    assert ids == hf_byt5(text).input_ids
    assert byt5.decode(ids) == hf_byt5.decode(ids)
    assert byt5.decode(ids, skip_special=True) == hf_byt5.decode(ids, skip_special_tokens=True)


def test_real_text(byt5, hf_byt5, real_text):
    for family in ("accented-latin", "cjk", "emoji"):
        text = real_text[family][:20_000]
        assert byt5.encode(text) == hf_byt5(text).input_ids
        assert byt5.decode(byt5.encode(text), skip_special=True) == text


def test_broken_utf8_is_dropped_like_transformers(byt5, hf_byt5):
    ids = [104, 0xC5 + 3, 3]  # 'e', a lone lead byte, NUL
    assert byt5.decode(ids) == hf_byt5.decode(ids) == "e\x00"
    assert byt5.vocab_size == len(hf_byt5) == 384

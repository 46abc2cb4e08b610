"""Streaming decode: pieces joined equal decode(ids), and no piece ends inside a character."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.tokenize import StreamDecoder, TokenizerError


def test_stream_of_real_text_never_splits_a_character(smollm2, real_text):
    for family in ("cjk", "emoji", "arabic"):
        text = real_text[family][:20_000]
        ids = smollm2.encode(text)
        pieces = list(StreamDecoder(smollm2).stream(ids))
        assert "".join(pieces) == text
        assert all("\ufffd" not in p for p in pieces)  # every piece is whole characters
        assert len(pieces) < len(ids)  # some tokens were half a character and waited


def test_one_token_at_a_time(smollm2):
    ids = smollm2.encode("日本")  # 日 is two tokens: 'æĹ' + '¥'
    stream = StreamDecoder(smollm2)
    assert [stream.feed(i) for i in ids] == ["", "日", "本"]
    assert stream.flush() == ""


def test_unfinished_character_flushes_as_replacement(smollm2):
    stream = StreamDecoder(smollm2)
    assert stream.feed(smollm2.encode("日")[0]) == ""
    assert stream.flush() == "\ufffd"


def test_skip_special(smollm2):
    ids = smollm2.encode("<|im_start|>hi<|im_end|>")
    assert "".join(StreamDecoder(smollm2, skip_special=True).stream(ids)) == "hi"
    assert "".join(StreamDecoder(smollm2).stream(ids)) == "<|im_start|>hi<|im_end|>"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 49151), max_size=30))
def test_stream_equals_decode_for_any_ids(smollm2, ids):
    assert "".join(StreamDecoder(smollm2).stream(ids)) == smollm2.decode(ids)


def test_streaming_needs_a_byte_level_tokenizer(minilm):
    with pytest.raises(TokenizerError, match="needs a byte-level tokenizer"):
        StreamDecoder(minilm)

"""SentencePiece-style decoders: equal to HF tokenizers' decoders on byte runs, valid or not."""

from __future__ import annotations

import pytest

from llmkit.tokenize.decoders import metaspace_decode, sentencepiece_decode


@pytest.mark.parametrize(
    "tokens",
    [
        ["▁Hello", "▁wor", "ld"],
        ["▁", "<0xE6>", "<0x97>", "<0xA5>", "▁x"],  # a character from three byte tokens
        ["<0xE6>", "<0x97>", "▁cut", "<0xFF>"],  # an invalid run: one U+FFFD per byte
        ["a", "▁", "▁b"],
        [],
    ],
)
def test_sentencepiece_decode_equals_hf(tokens):
    from tokenizers import decoders

    hf = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    assert sentencepiece_decode(tokens, strip_leading_space=True) == hf.decode(tokens)


@pytest.mark.parametrize("tokens", [["▁Hey", "▁there"], ["H", "ey", "▁", "▁x"], ["▁"]])
def test_metaspace_decode_equals_hf(tokens):
    from tokenizers import decoders

    assert metaspace_decode(tokens, prepend=True) == decoders.Metaspace(prepend_scheme="always").decode(tokens)
    assert metaspace_decode(tokens, prepend=False) == decoders.Metaspace(prepend_scheme="never").decode(tokens)

"""Byte-level tokenization without merges (ByT5, Xue et al. 2022): one id per UTF-8 byte.

Ids 0, 1, 2 are ``<pad>``, ``</s>``, ``<unk>``; byte ``b`` is id ``b + 3``; then 125 sentinel
tokens ``<extra_id_0>`` ... for span corruption. ``</s>`` ends every encoded text. Decoding
drops bytes that do not form UTF-8 (as transformers' ByT5Tokenizer does, ``errors="ignore"``).
"""

from __future__ import annotations

from llmkit.tokenize.bpe import PieceCache
from llmkit.tokenize.pretokenize import Pretokenizer
from llmkit.tokenize.special import AddedToken
from llmkit.tokenize.tokenizer import PostProcessor, Tokenizer

BYTE_OFFSET = 3  # ids 0..2 are <pad>, </s>, <unk>

# Every character is a piece, so the cache holds characters, not whole texts.
CHARACTERS = Pretokenizer("characters", r"(?s).")


class ByteTokens:
    """The 256 bytes as tokens (``tokens[b + 3]`` is byte ``b`` as a latin-1 character)."""

    def __init__(self, n_specials: int = BYTE_OFFSET):
        self.tokens = ["<pad>", "</s>", "<unk>"] + [chr(b) for b in range(256)]
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.token_bytes = [t.encode() for t in self.tokens[:BYTE_OFFSET]] + [bytes([b]) for b in range(256)]
        self.cache = PieceCache(self.encode_piece)

    def encode_piece(self, piece: str) -> tuple[int, ...]:
        """Ids of one piece: its UTF-8 bytes, shifted past the special ids."""
        return tuple(b + BYTE_OFFSET for b in piece.encode("utf-8"))

    def piece_offsets(self, piece: str, ids: tuple[int, ...]) -> list[tuple[int, int]]:
        """Every byte of a character spans that character."""
        return [(0, len(piece))] * len(ids)


def byt5_tokenizer(extra_ids: int = 125) -> Tokenizer:
    """ByT5's tokenizer (transformers ``ByT5Tokenizer`` defaults)."""
    model = ByteTokens()
    specials = [AddedToken(t, i, lstrip=True, rstrip=True) for i, t in enumerate(model.tokens[:BYTE_OFFSET])]
    sentinels = [AddedToken(f"<extra_id_{k}>", BYTE_OFFSET + 256 + k) for k in range(extra_ids)]
    return Tokenizer(model, CHARACTERS, specials + sentinels, PostProcessor(suffix=(1,)), "bytes", eos_id=1)

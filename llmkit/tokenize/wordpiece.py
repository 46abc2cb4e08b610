"""WordPiece (BERT; Schuster & Nakajima 2012, Devlin et al. 2019): greedy longest-match-first.

A word is cut from the left into the longest vocabulary entries; every piece after the first
carries the continuation prefix ``##``. A word with no such cut, or longer than
``max_input_chars_per_word`` characters, is one ``[UNK]``::

    "unaffable" -> una ##ffa ##ble
"""

from __future__ import annotations

from llmkit.tokenize.bpe import PieceCache
from llmkit.tokenize.errors import TokenizerError


class WordPiece:
    """A WordPiece vocabulary and its cached word -> ids map."""

    def __init__(self, tokens: list[str], unk_token: str = "[UNK]", prefix: str = "##", max_input_chars_per_word: int = 100):
        self.tokens = tokens
        self.vocab = {t: i for i, t in enumerate(tokens)}
        if unk_token not in self.vocab:
            raise TokenizerError(f"the unknown token {unk_token!r} is not in the WordPiece vocabulary")
        self.unk_token, self.unk_id = unk_token, self.vocab[unk_token]
        self.prefix, self.max_input_chars_per_word = prefix, max_input_chars_per_word
        self.cache = PieceCache(self.encode_piece)

    def encode_piece(self, word: str) -> tuple[int, ...]:
        """Ids of one word: longest vocabulary match first, ``##`` after the first piece."""
        if len(word) > self.max_input_chars_per_word:
            return (self.unk_id,)
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                sub = word[start:end] if start == 0 else self.prefix + word[start:end]
                if (i := self.vocab.get(sub)) is not None:
                    ids.append(i)
                    start = end
                    break
            else:
                return (self.unk_id,)
        return tuple(ids)

    def piece_offsets(self, word: str, ids: tuple[int, ...]) -> list[tuple[int, int]]:
        """Character span of each id inside ``word`` (an ``[UNK]`` spans the whole word)."""
        if ids == (self.unk_id,):
            return [(0, len(word))]
        spans, start = [], 0
        for k, i in enumerate(ids):
            n = len(self.tokens[i]) - (len(self.prefix) if k else 0)
            spans.append((start, start + n))
            start += n
        return spans


_CLEANUP = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]  # fmt: skip


def wordpiece_decode(tokens: list[str], prefix: str = "##", cleanup: bool = True) -> str:
    """Tokens joined into text: ``##`` pieces glued on, others after a space; HF's cleanup per token."""
    out = []
    for k, token in enumerate(tokens):
        if k:
            token = token[len(prefix) :] if token.startswith(prefix) else " " + token
        if cleanup:
            for dirty, clean in _CLEANUP:
                token = token.replace(dirty, clean)
        out.append(token)
    return "".join(out)

"""Character-level tokenization: one id per Unicode character (sheet section 5, "character-level").

The vocabulary is special tokens, then characters: given as a list, or the characters of a
corpus, most frequent first (ties in code-point order, as SentencePiece's ``char`` model sorts
them), optionally only those covering ``coverage`` of all occurrences. A character outside the
vocabulary becomes ``unk_token``::

    vocabulary  <unk> e t a o ...      "tea?"  ->  t e a <unk>
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from llmkit.tokenize.bpe import PieceCache
from llmkit.tokenize.errors import TokenizerError
from llmkit.tokenize.pretokenize import Pretokenizer

CHARACTERS = Pretokenizer("characters", r"(?s).")  # every character is a piece


class CharVocab:
    """Characters (and specials) as tokens; a piece is one character."""

    def __init__(self, tokens: list[str], unk_token: str = "<unk>"):
        self.tokens = tokens
        self.vocab = {t: i for i, t in enumerate(tokens)}
        if len(self.vocab) != len(tokens):
            raise TokenizerError("a character vocabulary lists a token twice")
        if unk_token not in self.vocab:
            raise TokenizerError(f"the unknown token {unk_token!r} is not in the character vocabulary")
        self.unk_token, self.unk_id = unk_token, self.vocab[unk_token]
        self.token_bytes = [t.encode("utf-8") for t in tokens]
        self.cache = PieceCache(self.encode_piece)

    def encode_piece(self, piece: str) -> tuple[int, ...]:
        """Id of each character of ``piece``."""
        return tuple(self.vocab.get(c, self.unk_id) for c in piece)

    def piece_offsets(self, piece: str, ids: tuple[int, ...]) -> list[tuple[int, int]]:
        """Each id spans its own character."""
        return [(k, k + 1) for k in range(len(ids))]


def char_vocabulary(texts: Iterable[str], coverage: float = 1.0) -> list[str]:
    """Characters of ``texts``, most frequent first, covering ``coverage`` of all character occurrences."""
    if not 0 < coverage <= 1:
        raise TokenizerError(f"coverage must be in (0, 1], got {coverage}")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    total, covered, out = sum(counts.values()), 0, []
    for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if covered >= coverage * total:
            break
        covered += n
        out.append(c)
    return out


def char_tokenizer(characters: Iterable[str], special_tokens: tuple[str, ...] = ("<unk>",), unk_token: str = "<unk>"):
    """A character-level :class:`Tokenizer`: ``special_tokens`` (matched whole in text) then ``characters``."""
    from llmkit.tokenize.special import AddedToken
    from llmkit.tokenize.tokenizer import Tokenizer

    chars = list(dict.fromkeys(characters))
    bad = next((c for c in chars if len(c) != 1), None)
    if bad is not None:
        raise TokenizerError(f"{bad!r} is not one character; a character vocabulary lists single characters")
    tokens = list(dict.fromkeys(special_tokens)) + [c for c in chars if c not in special_tokens]
    model = CharVocab(tokens, unk_token)
    added = [AddedToken(t, i) for i, t in enumerate(dict.fromkeys(special_tokens)) if len(t) > 1]
    return Tokenizer(model, CHARACTERS, added, decoder="byte_level")

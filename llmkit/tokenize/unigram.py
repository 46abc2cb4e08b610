"""Unigram language-model tokenization (Kudo 2018; SentencePiece, HF tokenizers ``Unigram``).

Every vocabulary piece has a log-probability score; a text is cut into the pieces whose scores
sum highest (Viterbi over the lattice of all pieces that fit). A character no piece covers
becomes ``<unk>`` with score ``min(score) - 10`` and neighbouring unknowns fuse into one::

    "▁lead"  candidates ▁le+ad (-9.1), ▁lea+d (-11.4), ▁+lead (-10.2) ...  ->  ▁le ad

Ties go to the path whose last piece starts earliest (HF's lattice keeps the first of equal
scores, nodes ordered by start position).
"""

from __future__ import annotations

from llmkit.tokenize.bpe import PieceCache
from llmkit.tokenize.errors import TokenizerError

UNK_PENALTY = 10.0  # HF tokenizers' K_UNK_PENALTY, as SentencePiece's kUnkPenalty


class Unigram:
    """A Unigram vocabulary (``(piece, score)`` pairs) and its cached piece -> ids map."""

    def __init__(self, pieces: list[tuple[str, float]], unk_id: int | None, byte_fallback: bool = False):
        self.tokens = [p for p, _ in pieces]
        self.scores = [float(s) for _, s in pieces]
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        if unk_id is not None and not 0 <= unk_id < len(self.tokens):
            raise TokenizerError(f"Unigram unk_id {unk_id} is outside the vocabulary of {len(self.tokens)} pieces")
        self.unk_id, self.byte_fallback = unk_id, byte_fallback
        self.unk_score = min(self.scores) - UNK_PENALTY
        self.prefixes = {t[:k] for t in self.tokens for k in range(1, len(t))}  # to stop a scan early
        self.max_len = max(map(len, self.tokens))
        self.cache = PieceCache(self.encode_piece)

    def segment(self, text: str) -> list[tuple[int, int, int | None]]:
        """Viterbi best cut of ``text``: ``(start, end, id)`` spans, ``id`` None for fused unknowns."""
        n = len(text)
        best = [0.0] + [float("-inf")] * n  # best[e]: highest score of a cut of text[:e]
        back: list[tuple[int, int | None]] = [(0, None)] * (n + 1)  # (start, id) of the last piece
        for b in range(n):
            if best[b] == float("-inf"):
                continue
            single = False
            for e in range(b + 1, min(n, b + self.max_len) + 1):
                sub = text[b:e]
                i = self.vocab.get(sub)
                if i is not None:
                    single |= e == b + 1
                    self._relax(best, back, b, e, self.scores[i], i)
                if sub not in self.prefixes:
                    break  # no longer piece starts with this
            if not single:
                self._relax(best, back, b, b + 1, self.unk_score, None)
        spans: list[tuple[int, int, int | None]] = []
        e = n
        while e > 0:
            b, i = back[e]
            if i is None and spans and spans[-1][2] is None:
                spans[-1] = (b, spans[-1][1], None)  # fuse neighbouring unknowns
            else:
                spans.append((b, e, i))
            e = b
        return spans[::-1]

    @staticmethod
    def _relax(best: list[float], back: list, b: int, e: int, score: float, i: int | None) -> None:
        if best[b] + score > best[e]:
            best[e] = best[b] + score
            back[e] = (b, i)

    def encode_piece(self, text: str) -> tuple[int, ...]:
        """Ids of one pre-token piece."""
        return tuple(i for b, e, unk in self.segment(text) for i in self._ids(text[b:e], unk))

    def _ids(self, piece: str, i: int | None) -> list[int]:
        if i is not None:
            return [i]
        if self.byte_fallback:
            byte_ids = [self.vocab.get(f"<0x{b:02X}>") for b in piece.encode("utf-8")]
            if None not in byte_ids:
                return byte_ids
        if self.unk_id is None:
            raise TokenizerError(f"{piece!r} has no Unigram piece and the model has no unk_id")
        return [self.unk_id]

    def piece_offsets(self, piece: str, ids: tuple[int, ...]) -> list[tuple[int, int]]:
        """Character span of each id inside ``piece`` (byte-fallback ids share their characters' span)."""
        return [(b, e) for b, e, unk in self.segment(piece) for _ in self._ids(piece[b:e], unk)]

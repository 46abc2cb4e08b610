"""Unigram language-model tokenization (Kudo 2018; SentencePiece, HF tokenizers ``Unigram``).

Every vocabulary piece has a log-probability score; a text is cut into the pieces whose scores
sum highest (Viterbi over the lattice of all pieces that fit). A character no piece covers
becomes ``<unk>`` with score ``min(score) - 10`` and neighbouring unknowns fuse into one::

    "▁lead"  candidates ▁le+ad (-9.1), ▁lea+d (-11.4), ▁+lead (-10.2) ...  ->  ▁le ad

Ties go to the path whose last piece starts earliest (HF's lattice keeps the first of equal
scores, nodes ordered by start position).

Subword regularisation (Kudo 2018) draws other cuts: :meth:`Unigram.nbest` lists the ``n``
best (A* from the end, the Viterbi prefix scores as exact heuristic, as SentencePiece's
``Lattice::NBest``), :meth:`Unigram.sample` draws one with ``p ∝ exp(alpha * score)`` over
all cuts (forward-filtering backward-sampling) or over the ``nbest_size`` best.
"""

from __future__ import annotations

import heapq
import math
import random
from itertools import count

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
        self.max_len = max(map(len, self.tokens))
        self.trie = piece_trie(self.tokens)
        self.cache = PieceCache(self.encode_piece)

    def segment(self, text: str) -> list[tuple[int, int, int | None]]:
        """Viterbi best cut of ``text``: ``(start, end, id)`` spans, ``id`` None for fused unknowns.

        The pieces that start at ``b`` are found by walking the trie along ``text[b:]``.
        """
        n = len(text)
        ninf = float("-inf")
        best = [0.0] + [ninf] * n  # best[e]: highest score of a cut of text[:e]
        back: list[tuple[int, int | None]] = [(0, None)] * (n + 1)  # (start, id) of the last piece
        trie, scores, unk_score = self.trie, self.scores, self.unk_score
        for b in range(n):
            base = best[b]
            if base == ninf:
                continue
            node, single = trie, False
            for e in range(b + 1, n + 1):
                node = node.get(text[e - 1])
                if node is None:
                    break
                i = node.get("")
                if i is not None:
                    single |= e == b + 1
                    if base + scores[i] > best[e]:
                        best[e], back[e] = base + scores[i], (b, i)
            if not single and base + unk_score > best[b + 1]:
                best[b + 1], back[b + 1] = base + unk_score, (b, None)
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

    # -- subword regularisation ----------------------------------------------------------------

    def lattice(self, text: str) -> list[list[tuple[int, int, float]]]:
        """``ends[e]``: the ``(start, id, score)`` of every node ending at ``e`` (unknown: ``unk_id``, unk score)."""
        n = len(text)
        ends: list[list[tuple[int, int, float]]] = [[] for _ in range(n + 1)]
        for b in range(n):
            node, single = self.trie, False
            for e in range(b + 1, n + 1):
                node = node.get(text[e - 1])
                if node is None:
                    break
                if (i := node.get("")) is not None:
                    single |= e == b + 1
                    ends[e].append((b, i, self.scores[i]))
            if not single:
                ends[b + 1].append((b, self.unk_id, self.unk_score))
        return ends

    def nbest(self, text: str, n: int) -> list[tuple[tuple[int, ...], float]]:
        """The ``n`` highest-scoring segmentations of ``text`` as ``(ids, score)``, best first (SentencePiece NBest)."""
        ends = self.lattice(text)
        best = _viterbi_scores(ends)  # best[e]: the exact best score of text[:e], the A* heuristic
        tie = count()
        agenda = [(-best[-1], next(tie), 0.0, len(text), ())]
        out: list[tuple[tuple[int, ...], float]] = []
        while agenda and len(out) < n:
            _, _, g, pos, ids = heapq.heappop(agenda)
            if pos == 0:
                out.append((ids, g))
                continue
            for b, i, score in ends[pos]:
                if best[b] > -math.inf:
                    heapq.heappush(agenda, (-(g + score + best[b]), next(tie), g + score, b, (i, *ids)))
        return out

    def sample(self, text: str, alpha: float = 0.1, nbest_size: int = -1, rng: random.Random | None = None) -> tuple[int, ...]:
        """One segmentation drawn with ``p ∝ exp(alpha * score)``: over all (``nbest_size < 0``) or the ``nbest_size`` best."""
        rng = rng or random.Random()
        if nbest_size in (0, 1):
            return self.nbest(text, 1)[0][0]
        if nbest_size > 1:
            cuts = self.nbest(text, nbest_size)
            top = max(s for _, s in cuts)
            return rng.choices([ids for ids, _ in cuts], [math.exp(alpha * (s - top)) for _, s in cuts])[0]
        ends = self.lattice(text)
        forward = _forward_logsumexp(ends, alpha)
        ids, pos = [], len(text)
        while pos > 0:  # backward sampling: the last piece, given the forward mass before it
            nodes = ends[pos]
            weights = [math.exp(forward[b] + alpha * score - forward[pos]) for b, _, score in nodes]
            b, i, _ = rng.choices(nodes, weights)[0]
            ids.append(i)
            pos = b
        return tuple(ids[::-1])


def piece_trie(tokens: list[str]) -> dict:
    """Characters -> nested dicts; key ``""`` of a node holds the id of the piece spelled on the way there."""
    root: dict = {}
    for i, token in enumerate(tokens):
        node = root
        for c in token:
            node = node.setdefault(c, {})
        node[""] = i  # a duplicated piece keeps its last id, as ``vocab`` does
    return root


def _viterbi_scores(ends: list[list[tuple[int, int, float]]]) -> list[float]:
    """Best score of every prefix: ``best[e] = max(best[b] + score)`` over nodes ``b -> e``."""
    best = [0.0] + [-math.inf] * (len(ends) - 1)
    for e in range(1, len(ends)):
        best[e] = max((best[b] + s for b, _, s in ends[e]), default=-math.inf)
    return best


def _forward_logsumexp(ends: list[list[tuple[int, int, float]]], alpha: float) -> list[float]:
    """Log of the summed ``exp(alpha * score)`` of all cuts of every prefix (the forward pass)."""
    forward = [0.0] + [-math.inf] * (len(ends) - 1)
    for e in range(1, len(ends)):
        terms = [forward[b] + alpha * s for b, _, s in ends[e] if forward[b] > -math.inf]
        if terms:
            top = max(terms)
            forward[e] = top + math.log(sum(math.exp(t - top) for t in terms))
    return forward

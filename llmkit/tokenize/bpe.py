"""Byte-pair encoding: merge the lowest-ranked adjacent pair until no merge applies.

Sennrich et al. 2016 learned the merges; GPT-2 (Radford et al. 2019) ran them over bytes.
Encoding a piece: start from one symbol per byte, then repeatedly merge the adjacent pair
whose merge was learned first (lowest rank); a pair that occurs twice merges leftmost first.
HF ``tokenizers`` (``Word::merge_all``) and llama.cpp apply exactly this order::

    "lower"  l o w e r  ->  l o w er  (rank 3: "e r")  ->  lo w er  (rank 7)  ->  low er  ->  lower

Two implementations that agree (a test holds them equal): :func:`bpe_merge` rescans a short
list of pair ranks (pieces are ~5 symbols on real text), :func:`bpe_merge_heap` keeps a heap
and a linked list so a 1 MB run of one letter stays O(n log n). ByteLevelBPE runs short pieces
through ``llmkit.kernels.BPEMerger``, the first one in C (a test holds it equal too): a cold
cache spends most of its time merging the pieces it has not seen.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable, Sequence
from functools import cached_property
from itertools import pairwise

from llmkit import kernels
from llmkit.io.packed import PackedBytes
from llmkit.tokenize.byte_level import bytes_to_unicode, spell_bytes, token_bytes
from llmkit.tokenize.errors import TokenizerError

NO_MERGE = 1 << 62  # rank of a pair that never merges

Pair = tuple[int, int]


def bpe_merge(ids: list[int], ranks: dict[Pair, int], merged: list[int]) -> list[int]:
    """``ids`` after every merge, lowest rank first, leftmost on ties (GPT-2 BPE); O(n^2)."""
    pair_ranks = [ranks.get(p, NO_MERGE) for p in pairwise(ids)]
    while pair_ranks:
        rank = min(pair_ranks)
        if rank == NO_MERGE:
            break
        i = pair_ranks.index(rank)
        ids[i : i + 2] = [merged[rank]]
        del pair_ranks[i]
        if i > 0:
            pair_ranks[i - 1] = ranks.get((ids[i - 1], ids[i]), NO_MERGE)
        if i < len(pair_ranks):
            pair_ranks[i] = ranks.get((ids[i], ids[i + 1]), NO_MERGE)
    return ids


def bpe_merge_heap(ids: list[int], ranks: dict[Pair, int], merged: list[int]) -> list[int]:
    """Same result as :func:`bpe_merge` in O(n log n): a heap of (rank, position), stale entries skipped."""
    symbols: list[int | None] = list(ids)  # None once merged into its left neighbour
    nxt = [*range(1, len(ids)), -1]
    prev = [*range(-1, len(ids) - 1)]
    heap = [(r, i) for i, p in enumerate(pairwise(ids)) if (r := ranks.get(p, NO_MERGE)) != NO_MERGE]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i]
        if symbols[i] is None or j < 0 or ranks.get((symbols[i], symbols[j])) != rank:
            continue  # stale: one side merged since this entry was pushed
        symbols[i], symbols[j] = merged[rank], None
        nxt[i] = nxt[j]
        if nxt[i] >= 0:
            prev[nxt[i]] = i
        for left in (prev[i], i):
            right = nxt[left] if left >= 0 else -1
            if left >= 0 and right >= 0 and (r := ranks.get((symbols[left], symbols[right]))) is not None:
                heapq.heappush(heap, (r, left))
    return [s for s in symbols if s is not None]


class PieceCache(dict):
    """piece -> ids, computed on first lookup by ``encode``; cleared when it grows past ``limit``."""

    def __init__(self, encode, limit: int = 1 << 20):
        super().__init__()
        self.encode, self.limit = encode, limit

    def __missing__(self, piece: str) -> tuple[int, ...]:
        if len(self) >= self.limit:
            self.clear()
        ids = self[piece] = self.encode(piece)
        return ids


class ByteLevelBPE:
    """Byte-level BPE (GPT-2, LLaMA-3, SmolLM): a piece's UTF-8 bytes, merged by rank.

    ``tokens[i]`` is id ``i`` spelled in GPT-2's byte alphabet (``Ġ`` for a space);
    ``merges[r]`` is the pair learned at step ``r``. A byte with no token of its own is
    dropped, as HF tokenizers' BPE without ``unk_token`` drops it.
    """

    HEAP_ABOVE = 64  # pieces of more bytes than this merge through the heap

    def __init__(self, tokens: Sequence[str], merges: Iterable[tuple[str, str]], ignore_merges: bool = False):
        self.tokens = tokens  # as given: a GGUF vocabulary stays packed (llmkit.io.packed)
        vocab = {t: i for i, t in enumerate(tokens)}  # kept only if asked for again (``vocab``): ~3 MB for 49k
        self.table = merge_table(vocab, merges)  # the merges as ids; the strings are not kept
        self.merged = self.table.merged
        self.ignore_merges = ignore_merges  # a piece that is a whole token skips the merges (LLaMA-3)
        spelling = bytes_to_unicode()
        self.byte_ids = [vocab.get(spelling[b], -1) for b in range(256)]
        self.token_bytes = PackedBytes.of(map(token_bytes, tokens))
        self.cache = PieceCache(self.encode_piece)
        self.merger = kernels.bpe_merger(self.table)  # bpe_merge in C (None without the kernels)

    @cached_property
    def vocab(self) -> dict[str, int]:
        """Token -> id (built on first use: encoding needs only the merge table and the byte ids)."""
        return {t: i for i, t in enumerate(self.tokens)}

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The merges as token pairs, rank order (rebuilt from the ids: for saving and display)."""
        return self.table.pairs(self.tokens)

    @property
    def ranks(self) -> dict[Pair, int]:
        """Pair of ids -> rank, for the Python merges (long pieces; every piece without the kernels)."""
        return self.table.ranks

    def encode_piece(self, piece: str) -> tuple[int, ...]:
        """Ids of one pre-token piece (uncached)."""
        if self.ignore_merges and (whole := self.vocab.get(spell_bytes(piece.encode("utf-8")))) is not None:
            return (whole,)
        byte_ids = self.byte_ids
        ids = [i for i in map(byte_ids.__getitem__, piece.encode("utf-8")) if i >= 0]
        if len(ids) > self.HEAP_ABOVE:
            return tuple(bpe_merge_heap(ids, self.ranks, self.merged))
        if self.merger is not None:
            return tuple(self.merger.merge(ids))
        return tuple(bpe_merge(ids, self.ranks, self.merged))

    def piece_offsets(self, piece: str, ids: tuple[int, ...]) -> list[tuple[int, int]]:
        """Character span of each id inside ``piece``: the characters its bytes came from (HF offsets)."""
        if len(ids) == 1 and len(self.token_bytes[ids[0]]) == len(piece.encode("utf-8")):
            return [(0, len(piece))]
        byte_ids = self.byte_ids
        char_of_byte = [k for k, ch in enumerate(piece) for b in ch.encode("utf-8") if byte_ids[b] >= 0]
        spans, pos = [], 0
        for i in ids:
            n = len(self.token_bytes[i])
            spans.append((char_of_byte[pos], char_of_byte[pos + n - 1] + 1))
            pos += n
        return spans


class MergeTable:
    """The merges as ids: rank ``r`` joins ``left[r]`` and ``right[r]`` into ``merged[r]``.

    Held as int32 arrays, 12 bytes a merge. As Python tuples of strings plus a dict of tuple keys
    the same 49k merges of SmolLM2 took ~16 MB. The ``ranks`` dict the Python merge loops read is
    built on first use: without the C kernels, or for a piece longer than HEAP_ABOVE bytes.
    """

    def __init__(self, left: array, right: array, merged: array) -> None:
        self.left, self.right, self.merged = left, right, merged

    def __len__(self) -> int:
        return len(self.merged)

    @cached_property
    def ranks(self) -> dict[Pair, int]:
        """Pair of ids -> rank (a pair listed twice keeps its last rank, as a dict built in rank order does)."""
        return {pair: rank for rank, pair in enumerate(zip(self.left, self.right))}

    def pairs(self, tokens: Sequence[str]) -> list[tuple[str, str]]:
        """The merges spelled as token pairs, rank order."""
        return [(tokens[a], tokens[b]) for a, b in zip(self.left, self.right)]


def merge_table(vocab: dict[str, int], merges: Iterable[tuple[str, str]]) -> MergeTable:
    """The :class:`MergeTable` of ``merges`` (token pairs, rank order) over ``vocab``."""
    left, right, merged = array("i"), array("i"), array("i")
    for rank, (a, b) in enumerate(merges):
        ids = vocab.get(a), vocab.get(b), vocab.get(a + b)
        if None in ids:
            missing = next(t for t, i in zip((a, b, a + b), ids) if i is None)
            raise TokenizerError(f"merge {rank} ({a!r} {b!r}) uses {missing!r}, which is not in the vocabulary")
        left.append(ids[0])
        right.append(ids[1])
        merged.append(ids[2])
    return MergeTable(left, right, merged)


def split_merge(merge: str, rank: int) -> tuple[str, str]:
    """A merge stored as text (``"Ġ t"``) as a pair of tokens."""
    parts = merge.split(" ")
    if len(parts) != 2 or not all(parts):
        raise TokenizerError(f"merge {rank} is {merge!r}; a merge is two tokens separated by one space")
    return parts[0], parts[1]


class CharBPE:
    """Character-level BPE with byte fallback (SentencePiece BPE: LLaMA-1/2, Mistral; HF ``byte_fallback``).

    A piece starts as one symbol per character; a character without a token becomes its UTF-8
    bytes as ``<0xXX>`` tokens (or ``unk_token``, neighbouring unknowns fused, when the bytes are
    missing); then the merges run as in :func:`bpe_merge`.
    """

    HEAP_ABOVE = 64

    def __init__(self, tokens: list[str], merges: list[tuple[str, str]], unk_token: str | None = None,
                 byte_fallback: bool = True, fuse_unk: bool = True):  # fmt: skip
        self.tokens, self.merges, self.byte_fallback, self.fuse_unk = tokens, merges, byte_fallback, fuse_unk
        self.vocab = {t: i for i, t in enumerate(tokens)}
        table = merge_table(self.vocab, merges)
        self.ranks, self.merged = table.ranks, table.merged
        self.unk_token = unk_token
        self.unk_id = self.vocab.get(unk_token) if unk_token is not None else None
        if unk_token is not None and self.unk_id is None:
            raise TokenizerError(f"the unknown token {unk_token!r} is not in the BPE vocabulary")
        self.byte_ids = [self.vocab.get(f"<0x{b:02X}>") for b in range(256)]
        self.cache = PieceCache(self.encode_piece)

    def symbols(self, piece: str) -> list[tuple[int, int]]:
        """Initial ``(id, character index)`` symbols: characters, byte fallback, fused unknowns."""
        out: list[tuple[int, int]] = []
        for k, ch in enumerate(piece):
            i = self.vocab.get(ch)
            if i is not None:
                out.append((i, k))
                continue
            byte_ids = [self.byte_ids[b] for b in ch.encode("utf-8")] if self.byte_fallback else [None]
            if None not in byte_ids:
                out += [(b, k) for b in byte_ids]
            elif self.unk_id is not None and not (self.fuse_unk and out and out[-1][0] == self.unk_id):
                out.append((self.unk_id, k))  # fuse_unk: one <unk> for a run of unknowns
        return out

    def encode_piece(self, piece: str) -> tuple[int, ...]:
        """Ids of one piece."""
        ids = [i for i, _ in self.symbols(piece)]
        merge = bpe_merge_heap if len(ids) > self.HEAP_ABOVE else bpe_merge
        return tuple(merge(ids, self.ranks, self.merged))

    def piece_offsets(self, piece: str, ids: tuple[int, ...]) -> list[tuple[int, int]]:
        """Character span of each id: the characters of the symbols merged into it."""
        symbols = self.symbols(piece)
        starts = [k for _, k in symbols] + [len(piece)]
        spans, pos = [], 0
        for i in ids:
            n = self._symbol_count(i)
            end = starts[pos + 1] if i == self.unk_id else symbols[pos + n - 1][1] + 1  # a fused <unk> runs on
            spans.append((starts[pos], end))
            pos += n
        return spans

    def _symbol_count(self, i: int) -> int:
        """How many initial symbols token ``i`` was merged from."""
        token = self.tokens[i]
        return 1 if i == self.unk_id or (len(token) == 6 and token.startswith("<0x") and token.endswith(">")) else len(token)

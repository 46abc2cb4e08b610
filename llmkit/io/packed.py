"""Many short byte strings in one blob: a vocabulary without one Python object per token.

A GGUF vocabulary (SmolLM2: 49,152 tokens and 48,900 merges) read as Python ``str`` objects takes
~4 MB a list (an object costs ~50 bytes plus its text), and freeing them leaves the heap
fragmented: the pages stay in the process. Packed, a list costs its text plus 8 bytes an item,
and an item is decoded only when it is read.

    blob     one ``bytes``: the items back to back, or, as a GGUF string array stores them,
             each item after its u64 length (``gap`` = 8: the length that precedes the next item)
    offsets  n + 1 positions: item i is ``blob[offsets[i] : offsets[i + 1] - gap]``
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload


class PackedBytes(Sequence[bytes]):
    """A read-only sequence of ``bytes`` held in one blob (equal to any sequence with equal items)."""

    __slots__ = ("blob", "offsets", "gap")

    def __init__(self, blob: bytes, offsets: array, gap: int = 0) -> None:
        if getattr(offsets, "typecode", None) != "q" or len(offsets) < 1:
            raise ValueError("offsets must be an array('q') of n + 1 positions")
        self.blob, self.offsets, self.gap = blob, offsets, gap

    @classmethod
    def of(cls, items: Iterable[bytes]) -> PackedBytes:
        """Pack ``items`` (consumed once)."""
        blob, offsets = bytearray(), array("q", [0])
        for item in items:
            blob += item
            offsets.append(len(blob))
        return cls(bytes(blob), offsets)

    def item(self, i: int) -> bytes:
        """Item ``i`` (0 <= i < len), unchecked: the hot path of decoding."""
        return self.blob[self.offsets[i] : self.offsets[i + 1] - self.gap]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.item(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(f"index {i} out of range for {n} items")
        return self.item(j)

    def __iter__(self) -> Iterator[Any]:
        return map(self.item, range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes, bytearray)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items, {len(self.blob)} bytes)"


class PackedStrings(PackedBytes):
    """A read-only sequence of ``str``: UTF-8 items of a PackedBytes, decoded on access."""

    __slots__ = ()

    @classmethod
    def of(cls, items: Iterable[str]) -> PackedStrings:  # type: ignore[override]
        packed = PackedBytes.of(s.encode("utf-8") for s in items)
        return cls(packed.blob, packed.offsets)

    def item(self, i: int) -> str:  # type: ignore[override]
        return self.blob[self.offsets[i] : self.offsets[i + 1] - self.gap].decode("utf-8")

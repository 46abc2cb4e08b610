"""llmkit/io/packed.py: byte strings and str held in one blob."""

from array import array

import pytest

from llmkit.io.packed import PackedBytes, PackedStrings

WORDS = ["", "a", "Ġthe", "日本語", "🙂", "x" * 300]


def test_strings_round_trip_and_index_like_a_list():
    packed = PackedStrings.of(WORDS)
    assert len(packed) == len(WORDS) and list(packed) == WORDS
    assert packed == WORDS and WORDS == packed and packed != WORDS[:-1] and packed != ["?"] * len(WORDS)
    assert [packed[i] for i in range(-len(WORDS), len(WORDS))] == WORDS + WORDS
    assert packed[1:4] == WORDS[1:4] and packed[::-2] == WORDS[::-2]
    assert all(type(s) is str for s in packed)
    for bad in (len(WORDS), -len(WORDS) - 1):
        with pytest.raises(IndexError, match="out of range"):
            packed[bad]
    assert packed != "abc" and not (packed == 3)


def test_bytes_and_the_gguf_layout_with_length_gaps():
    items = [w.encode() for w in WORDS]
    assert PackedBytes.of(items) == items and all(type(b) is bytes for b in PackedBytes.of(items))
    blob, offsets = bytearray(), array("q")
    for item in items:  # as a GGUF string array lies in the file: u64 length, then the bytes
        blob += len(item).to_bytes(8, "little") + item
        offsets.append(len(blob) - len(item))
    offsets.append(len(blob) + 8)
    assert PackedStrings(bytes(blob), offsets, gap=8) == WORDS
    assert repr(PackedBytes.of(items)).startswith("PackedBytes(6 items")


def test_empty_and_bad_offsets():
    assert list(PackedBytes.of([])) == [] and len(PackedStrings.of([])) == 0
    with pytest.raises(ValueError, match="array"):
        PackedBytes(b"", [0])  # type: ignore[arg-type]

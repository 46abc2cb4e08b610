"""The pure-Python GGUF header reader against gguf-py's GGUFReader and GGUFWriter (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

from llmkit.zoo.gguf_meta import GGUFError, read_gguf_header


@pytest.fixture(scope="module")
def smollm2_reader(smollm2_gguf):
    """gguf's reader on the real SmolLM2 file (slow: ~13 s, so once)."""
    return GGUFReader(smollm2_gguf)


def test_real_file_metadata_equals_gguf_reader(smollm2_gguf, smollm2_reader):
    header = read_gguf_header(smollm2_gguf)
    expected = {k: f.contents() for k, f in smollm2_reader.fields.items() if not k.startswith("GGUF.")}
    assert dict(header.metadata) == expected
    assert header.version == smollm2_reader.fields["GGUF.version"].contents() == 3


def test_real_file_tensor_infos_equal_gguf_reader(smollm2_gguf, smollm2_reader):
    header = read_gguf_header(smollm2_gguf)
    ours = [(t.name, t.dims, t.ggml_type, t.offset) for t in header.tensors]
    start = smollm2_reader.data_offset  # gguf reports absolute offsets; the header stores them from the data start
    theirs = [(t.name, tuple(int(x) for x in t.shape), int(t.tensor_type), int(t.data_offset) - start)
              for t in smollm2_reader.tensors]
    assert ours == theirs


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small GGUF written by gguf's writer with every value type and two tensors."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = GGUFWriter(path, "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -5)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.25)
    w.add_uint64("t.u64", 2**40)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", 1e-300)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ✓")
    w.add_array("t.ints", [1, 2, 3])
    w.add_array("t.strs", ["a", "bc", ""])
    w.add_key_value("t.nested", [[1, 2], [3]], GGUFValueType.ARRAY, sub_type=GGUFValueType.ARRAY)
    w.add_tensor("a.weight", np.zeros((3, 5), dtype=np.float32))
    w.add_tensor("b.bias", np.ones(7, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_every_value_type_round_trips(written):
    m = read_gguf_header(written).metadata
    assert m["general.architecture"] == "llama"
    assert (m["t.u8"], m["t.i8"], m["t.u16"], m["t.i16"]) == (200, -5, 60000, -30000)
    assert (m["t.u32"], m["t.i32"], m["t.u64"], m["t.i64"]) == (4_000_000_000, -2_000_000_000, 2**40, -(2**40))
    assert (m["t.f32"], m["t.f64"], m["t.bool"], m["t.str"]) == (0.25, 1e-300, True, "héllo ✓")
    assert (m["t.ints"], m["t.strs"], m["t.nested"]) == ([1, 2, 3], ["a", "bc", ""], [[1, 2], [3]])
    # GGUFReader.contents() flattens nested arrays ([[1, 2], [3]] -> [1, 2, 3]), so compare the rest with it.
    theirs = {k: f.contents() for k, f in GGUFReader(written).fields.items() if not k.startswith("GGUF.")}
    assert {k: v for k, v in m.items() if k != "t.nested"} == {k: v for k, v in theirs.items() if k != "t.nested"}


def test_written_tensor_infos(written):
    t = {x.name: x for x in read_gguf_header(written).tensors}
    assert t["a.weight"].dims == (5, 3) and t["a.weight"].ggml_type == GGMLQuantizationType.F32  # ggml order
    assert t["b.bias"].dims == (7,) and t["b.bias"].ggml_type == GGMLQuantizationType.F16


@pytest.mark.parametrize("keep", [3, 10, 40, 200, -20])
def test_truncated_header_is_named(written, tmp_path, keep):
    data = written.read_bytes()
    header_end = len(data) - 64  # well inside: the tensor data is the last bytes
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep] if keep > 0 else data[: header_end + keep - 200])
    with pytest.raises(GGUFError, match=f"{cut}: (truncated GGUF header|not a GGUF file)"):
        read_gguf_header(cut)


def test_bad_magic_version_and_missing_file(written, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04" + written.read_bytes()[4:])
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf_header(bad)
    v1 = tmp_path / "v1.gguf"
    v1.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + written.read_bytes()[8:])
    with pytest.raises(GGUFError, match="GGUF version 1 is not supported"):
        read_gguf_header(v1)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf_header(empty)
    with pytest.raises(GGUFError, match="no such file"):
        read_gguf_header(tmp_path / "nope.gguf")


def test_huge_claimed_array_is_truncation_not_a_hang(tmp_path):
    """A corrupt count must fail at once, never loop over 2**60 items."""
    data = b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1).to_bytes(8, "little")
    key = b"k"
    data += len(key).to_bytes(8, "little") + key + (9).to_bytes(4, "little")  # array
    data += (0).to_bytes(4, "little") + (2**60).to_bytes(8, "little")  # of 2**60 uint8
    path = tmp_path / "huge.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_header(path)

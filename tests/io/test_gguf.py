"""llmkit.io.gguf against gguf-py (the GGUF oracle): field by field, bit for bit, and on broken files."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

from llmkit.errors import LlmkitError
from llmkit.io.gguf import GGUFError, llama_state_dict, llmkit_name, open_gguf
from llmkit.io.packed import PackedStrings
from llmkit.quant.ggml import SUPPORTED_TYPES

Q = gguf.GGMLQuantizationType


# Every metadata value type, with the GGUF value type the writer should use.
V = gguf.GGUFValueType
ALL_VALUE_TYPES: list[tuple[str, Any, gguf.GGUFValueType, gguf.GGUFValueType | None]] = [
    ("t.uint8", 200, V.UINT8, None),
    ("t.int8", -100, V.INT8, None),
    ("t.uint16", 60000, V.UINT16, None),
    ("t.int16", -30000, V.INT16, None),
    ("t.uint32", 4_000_000_000, V.UINT32, None),
    ("t.int32", -2_000_000_000, V.INT32, None),
    ("t.float32", 0.1, V.FLOAT32, None),
    ("t.bool_true", True, V.BOOL, None),
    ("t.bool_false", False, V.BOOL, None),
    ("t.string", "héllo ✓ 🙂", V.STRING, None),
    ("t.empty_string", "", V.STRING, None),
    ("t.uint64", 2**63 + 5, V.UINT64, None),
    ("t.int64", -(2**62), V.INT64, None),
    ("t.float64", 1 / 3, V.FLOAT64, None),
    ("t.arr_uint8", [0, 1, 255], V.ARRAY, V.UINT8),
    ("t.arr_int16", [-5, 7], V.ARRAY, V.INT16),
    ("t.arr_uint32", [1, 2, 3], V.ARRAY, V.UINT32),
    ("t.arr_int32", [-1, 0, 1], V.ARRAY, V.INT32),
    ("t.arr_float32", [0.5, -1.25, 3.1], V.ARRAY, V.FLOAT32),
    ("t.arr_bool", [True, False, True], V.ARRAY, V.BOOL),
    ("t.arr_string", ["a", "", "Ġ t", "日本"], V.ARRAY, V.STRING),
    ("t.arr_uint64", [2**64 - 1, 0], V.ARRAY, V.UINT64),
    ("t.arr_int64", [-(2**63), 2**63 - 1], V.ARRAY, V.INT64),
    ("t.arr_float64", [1e300, -2.5], V.ARRAY, V.FLOAT64),
    ("t.arr_nested", [[1, 2], [3], [4, 5, 6]], V.ARRAY, V.ARRAY),
]


def write_gguf(
    path: Path,
    metadata: list[tuple[str, Any, gguf.GGUFValueType, gguf.GGUFValueType | None]] = (),  # type: ignore[assignment]
    tensors: dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType]] | None = None,
    alignment: int | None = None,
    arch: str = "llama",
) -> Path:
    """Write a GGUF with gguf-py's GGUFWriter (the oracle's writer).

    ``tensors`` maps a name to (data, type): float arrays for F32/F16, raw uint8 blocks (rows, bytes) otherwise.
    """
    w = gguf.GGUFWriter(path, arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub in metadata:
        w.add_key_value(key, value, vtype, sub)
    for name, (data, qtype) in (tensors or {}).items():
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def quantized(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType, seed: int = 0) -> np.ndarray:
    """Random normal data of ``shape`` quantized by gguf-py (raw blocks, or the float array for F32/F16)."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return gguf.quants.quantize(x, qtype)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise float32 equality (so -0.0 != 0.0 and NaN payloads count)."""
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# -- the real SmolLM2 file --------------------------------------------------------------------


def test_metadata_equals_gguf_reader_key_by_key(smollm2, smollm2_reader):
    ref_keys = [k for k in smollm2_reader.fields if not k.startswith("GGUF.")]
    assert list(smollm2.metadata) == ref_keys
    for key in ref_keys:
        assert smollm2.metadata[key] == smollm2_reader.fields[key].contents(), key
    assert smollm2.version == smollm2_reader.fields["GGUF.version"].contents()
    assert smollm2.data_offset == smollm2_reader.data_offset


def test_tokenizer_metadata_has_python_types(smollm2):
    md = smollm2.metadata
    assert all(isinstance(t, str) for t in md["tokenizer.ggml.tokens"])
    assert all(isinstance(m, str) for m in md["tokenizer.ggml.merges"])
    assert all(isinstance(t, int) for t in md["tokenizer.ggml.token_type"])
    assert isinstance(md["tokenizer.ggml.add_bos_token"], bool)
    assert isinstance(md["tokenizer.chat_template"], str)


def test_tensor_table_equals_gguf_reader(smollm2, smollm2_reader):
    assert list(smollm2.tensors) == [t.name for t in smollm2_reader.tensors]
    for ref in smollm2_reader.tensors:
        ours = smollm2.tensors[ref.name]
        assert ours.shape == tuple(int(d) for d in reversed(ref.shape)), ref.name
        assert (ours.ggml_type, ours.ggml_type_id) == (ref.tensor_type.name, int(ref.tensor_type)), ref.name
        assert (ours.offset, ours.nbytes) == (ref.data_offset, ref.n_bytes), ref.name
        assert ours.n_elements == ref.n_elements
        raw = smollm2.raw(ref.name)
        assert raw.dtype == torch.uint8
        assert np.array_equal(raw.numpy(), np.asarray(ref.data).reshape(-1).view(np.uint8)), ref.name


def test_every_tensor_dequantizes_exactly_like_gguf(smollm2, smollm2_reader):
    kinds = set()
    for ref in smollm2_reader.tensors:
        expected = gguf.quants.dequantize(ref.data, ref.tensor_type)
        ours = smollm2.dequantize(ref.name)
        assert ours.dtype == torch.float32
        assert same_bits(ours.numpy(), expected.reshape(ours.shape)), ref.name
        kinds.add(ref.tensor_type.name)
    assert kinds == {"Q4_1", "Q8_0", "F32"}


def test_spec_is_the_files_architecture(smollm2, smollm2_reader):
    f = smollm2_reader.fields
    spec = smollm2.spec()
    assert spec.n_layers == f["llama.block_count"].contents()
    assert spec.d_model == f["llama.embedding_length"].contents()
    assert spec.n_heads == f["llama.attention.head_count"].contents()
    assert spec.kv_heads == f["llama.attention.head_count_kv"].contents()
    assert spec.d_ff == f["llama.feed_forward_length"].contents()
    assert spec.vocab_size == len(f["tokenizer.ggml.tokens"].contents())
    assert spec.tied_embeddings  # the file has no output.weight
    assert "output.weight" not in [t.name for t in smollm2_reader.tensors]


def test_llama_state_dict_matches_transformers_gguf_loader(smollm2, smollm2_reader):
    """Names map one to one; q/k rows equal transformers' reverse permutation; the rest is the plain dequantization."""
    spec = smollm2.spec()
    processor = LlamaTensorProcessor(config={"num_attention_heads": spec.n_heads, "num_key_value_heads": spec.kv_heads})
    state = llama_state_dict(smollm2)
    assert len(state) == len(smollm2_reader.tensors)
    for ref in smollm2_reader.tensors:
        name = llmkit_name(ref.name)
        plain = smollm2.dequantize(ref.name).numpy()  # == gguf.quants.dequantize, tested above
        expected = processor.process(plain, ref.name).weights
        assert same_bits(state[name].numpy(), np.ascontiguousarray(expected)), ref.name
    assert {"embed.weight", "norm.weight", "blocks.29.attn.q.weight", "blocks.0.ffn.down.weight"} <= set(state)
    assert "lm_head.weight" not in state


# -- synthetic files written by gguf-py's writer ------------------------------------------------


def test_every_metadata_value_type_reads_like_the_writer_wrote_it(tmp_path):
    path = write_gguf(tmp_path / "kv.gguf", ALL_VALUE_TYPES)
    ours = open_gguf(path).metadata
    reader = gguf.GGUFReader(path)
    for key, value, vtype, sub in ALL_VALUE_TYPES:
        if vtype == gguf.GGUFValueType.FLOAT32 or sub == gguf.GGUFValueType.FLOAT32:
            value = np.asarray(value, dtype=np.float32).tolist()  # stored as float32
        assert ours[key] == value, key
        if sub == gguf.GGUFValueType.STRING:  # string arrays come packed (llmkit.io.packed): items are str
            assert isinstance(ours[key], PackedStrings) and all(type(s) is str for s in ours[key]), key
        else:
            assert type(ours[key]) is type(value), key
        if sub != gguf.GGUFValueType.ARRAY:  # the reader flattens nested arrays; the writer's input is the oracle
            assert ours[key] == reader.fields[key].contents(), key
    assert ours["general.architecture"] == "llama"


@pytest.mark.parametrize("alignment", [None, 64, 1])
def test_tensors_and_alignment_match_gguf_reader(tmp_path, alignment):
    tensors = {
        "f32": (np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32), Q.F32),
        "f16": (np.random.default_rng(2).standard_normal((7,)).astype(np.float16), Q.F16),
        "bf16": (quantized((2, 3), Q.BF16), Q.BF16),
        "q8_0": (quantized((3, 64), Q.Q8_0), Q.Q8_0),
        "q4_0": (quantized((1, 32), Q.Q4_0), Q.Q4_0),
        "q4_1": (quantized((5, 96), Q.Q4_1), Q.Q4_1),
        "q5_0": (quantized((2, 32), Q.Q5_0), Q.Q5_0),
        "q5_1": (quantized((2, 2, 32), Q.Q5_1), Q.Q5_1),
    }
    path = write_gguf(tmp_path / "t.gguf", tensors=tensors, alignment=alignment)
    ours, reader = open_gguf(path), gguf.GGUFReader(path)
    assert ours.alignment == (alignment or 32)
    assert ours.data_offset == reader.data_offset
    for ref in reader.tensors:
        t = ours.tensors[ref.name]
        assert (t.offset, t.nbytes, t.ggml_type) == (ref.data_offset, ref.n_bytes, ref.tensor_type.name)
        assert t.shape == tuple(int(d) for d in reversed(ref.shape))
        expected = gguf.quants.dequantize(ref.data, ref.tensor_type).reshape(t.shape)
        assert same_bits(ours.dequantize(ref.name).numpy(), expected), ref.name


def test_version_2_reads_like_version_3(tmp_path):
    v3 = write_gguf(tmp_path / "v3.gguf", ALL_VALUE_TYPES[:5], tensors={"w": (quantized((2, 32), Q.Q8_0), Q.Q8_0)})
    data = bytearray(v3.read_bytes())
    data[4:8] = struct.pack("<I", 2)
    v2 = tmp_path / "v2.gguf"
    v2.write_bytes(bytes(data))
    a, b = open_gguf(v3), open_gguf(v2)
    assert (a.version, b.version) == (3, 2)
    assert a.metadata == b.metadata and a.tensors == b.tensors
    assert same_bits(a.dequantize("w").numpy(), b.dequantize("w").numpy())


def test_raw_is_a_zero_copy_view_that_never_writes_the_file(tmp_path):
    path = write_gguf(tmp_path / "w.gguf", tensors={"w": (np.ones((4, 8), np.float32), Q.F32)})
    before = path.read_bytes()
    f = open_gguf(path)
    raw = f.raw("w")
    raw.zero_()  # copy-on-write map: the file on disk is untouched
    assert path.read_bytes() == before
    assert f.raw("w").data_ptr() == raw.data_ptr()


# -- broken input: always a GGUFError naming the file, never a hang or an IndexError -------------


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("g") / "small.gguf"
    write_gguf(
        path,
        [("arr", [1, 2, 3], V.ARRAY, V.INT32), ("s", "text", V.STRING, None)],
        tensors={"w.q8": (quantized((2, 32), Q.Q8_0), Q.Q8_0), "w.f32": (np.ones(4, np.float32), Q.F32)},
    )
    return path.read_bytes()


def broken(tmp_path: Path, data: bytes | bytearray) -> Path:
    path = tmp_path / "broken.gguf"
    path.write_bytes(bytes(data))
    return path


def expect_error(path: Path, *words: str) -> str:
    with pytest.raises(GGUFError) as e:
        open_gguf(path)
    message = str(e.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    return message


def patched(data: bytes, at: int, fmt: str, value: int) -> bytearray:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return out


def after(data: bytes, name: bytes) -> int:
    """Offset just past the length-prefixed string ``name`` in the header."""
    return data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)


def test_bad_magic_and_wrong_file_types(tmp_path, small_gguf, minilm_dir):
    expect_error(broken(tmp_path, b"GGUX" + small_gguf[4:]), "not a GGUF file")
    expect_error(broken(tmp_path, b'{"model_type": "llama"}'), "not a GGUF file")
    expect_error(broken(tmp_path, b""), "not a GGUF file", "empty")
    expect_error(minilm_dir / "model.safetensors", "not a GGUF file")
    expect_error(tmp_path / "missing.gguf", "no such file")
    expect_error(tmp_path, "directory")


@pytest.mark.parametrize(
    ("version", "words"), [(1, ("version 1",)), (4, ("version 4",)), (0x03000000, ("big-endian",))]
)
def test_unsupported_versions(tmp_path, small_gguf, version, words):
    expect_error(broken(tmp_path, patched(small_gguf, 4, "<I", version)), "not supported", *words)


def test_every_truncation_is_a_clear_error(tmp_path, small_gguf):
    reader = gguf.GGUFReader(broken(tmp_path, small_gguf))
    end = max(t.data_offset + t.n_bytes for t in reader.tensors)  # the writer pads after the last tensor
    for cut in range(end):
        message = expect_error(broken(tmp_path, small_gguf[:cut]))
        assert "GGUF" in message


def test_absurd_counts_and_lengths_fail_fast(tmp_path, small_gguf):
    expect_error(broken(tmp_path, patched(small_gguf, 8, "<Q", 2**60)), "tensor entries")
    expect_error(broken(tmp_path, patched(small_gguf, 16, "<Q", 2**60)), "metadata entries")
    expect_error(broken(tmp_path, patched(small_gguf, 24, "<Q", 2**62)), "truncated")  # first key's length
    arr = after(small_gguf, b"arr")
    expect_error(broken(tmp_path, patched(small_gguf, arr + 8, "<Q", 2**61)), "arr")  # array count
    expect_error(broken(tmp_path, patched(small_gguf, arr + 4, "<I", 9)), "truncated")  # array of arrays
    name = after(small_gguf, b"w.q8")
    expect_error(broken(tmp_path, patched(small_gguf, name, "<I", 9)), "dimensions")
    expect_error(broken(tmp_path, patched(small_gguf, name + 4, "<Q", 2**40)), "w.q8", "truncated")
    expect_error(broken(tmp_path, patched(small_gguf, name + 4 + 16 + 4, "<Q", 2**50)), "w.q8", "truncated")


def test_unknown_value_and_tensor_types(tmp_path, small_gguf):
    expect_error(broken(tmp_path, patched(small_gguf, after(small_gguf, b"s"), "<I", 99)), "unknown value type 99")
    name = after(small_gguf, b"w.q8")
    expect_error(broken(tmp_path, patched(small_gguf, name + 4 + 16, "<I", 99)), "w.q8", "unknown GGML type id 99")
    expect_error(broken(tmp_path, patched(small_gguf, name + 4, "<Q", 33)), "w.q8", "block size")


def test_bad_alignment(tmp_path):
    path = write_gguf(tmp_path / "a.gguf", [("general.alignment", 48, gguf.GGUFValueType.UINT32, None)])
    expect_error(path, "general.alignment", "power of two")


def test_unsupported_quant_type_is_named_at_dequantize_time(tmp_path):
    blocks = np.random.default_rng(0).integers(0, 256, (2, 18), dtype=np.uint8)  # IQ4_NL: 32 weights in 18 bytes
    path = write_gguf(tmp_path / "iq.gguf", tensors={"w": (blocks, Q.IQ4_NL)})
    f = open_gguf(path)
    assert f.tensors["w"].ggml_type == "IQ4_NL" and f.tensors["w"].shape == (2, 32)
    with pytest.raises(LlmkitError) as e:
        f.dequantize("w")
    assert "IQ4_NL" in str(e.value) and str(path) in str(e.value)
    assert all(kind in str(e.value) for kind in SUPPORTED_TYPES)
    with pytest.raises(GGUFError, match="no tensor named 'nope'"):
        f.raw("nope")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_bytes_open_or_fail_cleanly(tmp_path, small_gguf, edits):
    data = bytearray(small_gguf)
    for at, value in edits:
        data[at % len(data)] = value
    path = broken(tmp_path, data)
    try:
        f = open_gguf(path)
    except GGUFError as e:
        assert str(path) in str(e)
        return
    for name in f.tensors:
        try:
            f.dequantize(name)
        except LlmkitError as e:
            assert str(path) in str(e)


# -- tiny synthetic models of each supported architecture ------------------------------------


def tiny_model(path: Path, arch: str, tensors: dict[str, np.ndarray]) -> Path:
    """A GGUF of a 1-block model (d_model 8, 2 query heads, 1 KV head, d_ff 16, vocab 10), F32 tensors."""
    U = gguf.GGUFValueType.UINT32
    meta = [(f"{arch}.{k}", v, U, None) for k, v in (("block_count", 1), ("context_length", 32),
            ("embedding_length", 8), ("feed_forward_length", 16), ("attention.head_count", 2),
            ("attention.head_count_kv", 1), ("vocab_size", 10))]
    return write_gguf(path, meta, tensors={k: (v, Q.F32) for k, v in tensors.items()}, arch=arch)


def random_tensors(names_and_shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in names_and_shapes.items()}


LLAMA_TENSORS = {
    "token_embd.weight": (10, 8), "output_norm.weight": (8,), "output.weight": (10, 8),
    "blk.0.attn_norm.weight": (8,), "blk.0.attn_q.weight": (8, 8), "blk.0.attn_k.weight": (4, 8),
    "blk.0.attn_v.weight": (4, 8), "blk.0.attn_q.bias": (8,), "blk.0.attn_k.bias": (4,), "blk.0.attn_v.bias": (4,),
    "blk.0.attn_output.weight": (8, 8), "blk.0.ffn_norm.weight": (8,), "blk.0.ffn_gate.weight": (16, 8),
    "blk.0.ffn_up.weight": (16, 8), "blk.0.ffn_down.weight": (8, 16),
}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_state_dict_follows_transformers_per_architecture(tmp_path, arch):
    """llama: q/k (weights and biases) un-permuted like transformers' LlamaTensorProcessor; qwen2: as stored."""
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    tensors = random_tensors(LLAMA_TENSORS)
    f = open_gguf(tiny_model(tmp_path / f"{arch}.gguf", arch, tensors))
    config = {"num_attention_heads": 2, "num_key_value_heads": 1}
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=config)
    state = llama_state_dict(f)
    assert set(state) == {llmkit_name(n) for n in tensors}
    assert "lm_head.weight" in state and "blocks.0.attn.q.bias" in state
    for name, value in tensors.items():
        expected = np.ascontiguousarray(processor.process(value, name).weights)
        assert same_bits(state[llmkit_name(name)].numpy(), expected), name


def test_state_dict_casts_to_the_requested_dtype(tmp_path):
    tensors = random_tensors(LLAMA_TENSORS)
    state = llama_state_dict(open_gguf(tiny_model(tmp_path / "m.gguf", "llama", tensors)), dtype=torch.bfloat16)
    assert {t.dtype for t in state.values()} == {torch.bfloat16}
    assert torch.equal(state["embed.weight"], torch.from_numpy(tensors["token_embd.weight"]).to(torch.bfloat16))


def test_phi3_fused_tensors_are_split_like_hf_phi3(tmp_path):
    """HF Phi-3 slices qkv_proj rows as [q | k | v] and gate_up_proj as [gate | up]; GGUF keeps them fused."""
    parts = random_tensors({"q": (8, 8), "k": (4, 8), "v": (4, 8), "gate": (16, 8), "up": (16, 8)})
    tensors = random_tensors({n: s for n, s in LLAMA_TENSORS.items() if "attn_q" not in n and "attn_k" not in n
                              and "attn_v" not in n and "ffn_gate" not in n and "ffn_up" not in n})
    tensors["blk.0.attn_qkv.weight"] = np.concatenate([parts["q"], parts["k"], parts["v"]])
    tensors["blk.0.ffn_up.weight"] = np.concatenate([parts["gate"], parts["up"]])
    state = llama_state_dict(open_gguf(tiny_model(tmp_path / "phi3.gguf", "phi3", tensors)))
    for part, target in (("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v"), ("gate", "ffn.gate"), ("up", "ffn.up")):
        assert same_bits(state[f"blocks.0.{target}.weight"].numpy(), parts[part]), part


def test_unmapped_tensors_and_architectures_are_named(tmp_path):
    tensors = random_tensors({**LLAMA_TENSORS, "blk.0.attn_sinks.weight": (2,)})
    with pytest.raises(GGUFError, match="does not map: blk.0.attn_sinks.weight"):
        llama_state_dict(open_gguf(tiny_model(tmp_path / "extra.gguf", "llama", tensors)))
    with pytest.raises(LlmkitError, match="GGUF architecture 'gpt2' is not supported"):
        llama_state_dict(open_gguf(tiny_model(tmp_path / "gpt2.gguf", "gpt2", random_tensors(LLAMA_TENSORS))))


def test_string_arrays_with_bad_utf8_or_lengths_are_named(tmp_path):
    path = write_gguf(tmp_path / "s.gguf", [("tok", ["ab", "cd", "é"], V.ARRAY, V.STRING)])
    data = path.read_bytes()
    at = data.index(b"cd")
    expect_error(broken(tmp_path, data[:at] + b"\xff\xfe" + data[at + 2 :]), "tok", "[1]", "not valid UTF-8")
    length = at - 8  # the u64 length of "cd"
    expect_error(broken(tmp_path, patched(data, length, "<Q", 2**40)), "tok", "truncated")
    first = after(data, b"tok") + 4 + 4 + 8  # value type, element type (u32 each), count u64: the first length
    assert struct.unpack_from("<Q", data, first) == (2,)
    assert open_gguf(path).metadata["tok"] == ["ab", "cd", "é"]


def test_a_vocabulary_is_held_packed(smollm2):
    tokens = smollm2.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, PackedStrings) and len(tokens) == 49152
    assert len(tokens.blob) < 16 * len(tokens)  # the file's bytes (8-byte lengths included), no str objects

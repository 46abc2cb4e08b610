"""llmkit.quant.ggml against gguf-py's reference codecs (``gguf.quants``): bit-exact on random blocks of every type."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.errors import LlmkitError
from llmkit.quant.ggml import BLOCK_FORMATS, GGML_TYPES, SUPPORTED_TYPES, dequantize, ggml_type

Q = gguf.GGMLQuantizationType
# Where each format keeps its fp16 scales (byte offsets in the block): overwritten with finite values in tests.
FP16_SCALES = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}
QUANTIZABLE_BY_GGUF = ("BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")


def ours(blocks: np.ndarray, kind: str) -> np.ndarray:
    """llmkit's dequantization of (rows, bytes) uint8 blocks, as (rows, weights) float32."""
    t = ggml_type(kind)
    rows = blocks.shape[0]
    shape = (rows, blocks.shape[1] // t.type_size * t.block_size)
    return dequantize(torch.from_numpy(np.ascontiguousarray(blocks).reshape(-1)), kind, shape).numpy()


def reference(blocks: np.ndarray, kind: str) -> np.ndarray:
    return gguf.quants.dequantize(blocks, Q[kind])


def assert_same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def random_blocks(kind: str, n_blocks: int, seed: int) -> np.ndarray:
    """Random bytes as (n_blocks, type_size) blocks, fp16 scales replaced by finite values of varied magnitude."""
    rng = np.random.default_rng(seed)
    t = ggml_type(kind)
    blocks = rng.integers(0, 256, (n_blocks, t.type_size), dtype=np.uint8)
    for at in FP16_SCALES.get(kind, ()):
        scale = (rng.standard_normal(n_blocks) * 10.0 ** rng.integers(-6, 3, n_blocks)).astype(np.float16)
        blocks[:, at : at + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def test_registry_geometry_is_ggmls():
    for t in GGML_TYPES.values():
        assert (t.block_size, t.type_size) == gguf.GGML_QUANT_SIZES[Q(t.id)], t.name
        assert Q(t.id).name == t.name
    for name, fmt in BLOCK_FORMATS.items():
        assert fmt.type.name == name
        assert (fmt.block_size, fmt.type_size) == gguf.GGML_QUANT_SIZES[Q[name]]
    assert set(SUPPORTED_TYPES) == {
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"
    }


@pytest.mark.parametrize("kind", QUANTIZABLE_BY_GGUF)
def test_blocks_quantized_by_gguf_dequantize_exactly(kind):
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.standard_normal((8, 256)),
        rng.standard_normal((2, 256)) * 1e-4,
        rng.standard_normal((2, 256)) * 300,
        np.zeros((1, 256)),  # an all-zero block (scale 0)
    ]).astype(np.float32)
    blocks = gguf.quants.quantize(x, Q[kind])
    assert_same_bits(ours(blocks, kind), reference(blocks, kind))


@pytest.mark.parametrize("kind", sorted(FP16_SCALES))
def test_random_blocks_with_finite_scales_dequantize_exactly(kind):
    blocks = random_blocks(kind, 512, seed=1)
    expected = reference(blocks, kind)
    assert np.isfinite(expected).all()
    assert_same_bits(ours(blocks, kind), expected)


def test_float_types_dequantize_exactly():
    x = np.random.default_rng(2).standard_normal((4, 64)).astype(np.float32)
    for kind, raw in (("F32", x), ("F16", x.astype(np.float16)), ("BF16", gguf.quants.quantize(x, Q.BF16))):
        raw_bytes = raw.view(np.uint8)
        assert_same_bits(ours(raw_bytes, kind), reference(raw, kind).reshape(4, 64))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(BLOCK_FORMATS)), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_any_bytes_dequantize_like_gguf(kind, n_blocks, seed):
    """Arbitrary bytes, infinities and NaNs included: same NaN positions, identical bits everywhere else.

    (A NaN's payload is not compared: numpy and torch widen a signalling fp16 NaN differently.)
    """
    t = ggml_type(kind)
    blocks = np.random.default_rng(seed).integers(0, 256, (n_blocks, t.type_size), dtype=np.uint8)
    with np.errstate(all="ignore"):
        expected = reference(blocks, kind).reshape(n_blocks, t.block_size)
    got = ours(blocks, kind).reshape(n_blocks, t.block_size)
    nan = np.isnan(expected)
    assert np.array_equal(nan, np.isnan(got))
    assert np.array_equal(expected[~nan].view(np.uint32), got[~nan].view(np.uint32))


def test_shapes_follow_pytorch_order():
    blocks = random_blocks("Q4_K", 6, seed=3)  # 6 blocks of 256 = 3 rows of 512
    flat = torch.from_numpy(blocks.reshape(-1))
    y = dequantize(flat, "Q4_K", (3, 512))
    assert y.shape == (3, 512) and y.dtype == torch.float32
    assert torch.equal(y.reshape(-1), dequantize(flat, "Q4_K", (1536,)))
    assert torch.equal(dequantize(flat, 12, (3, 512)), y)  # by type id


def test_bad_input_is_a_clear_error():
    with pytest.raises(LlmkitError, match=r"IQ2_XXS is not supported \(supported: F32, F16"):
        dequantize(torch.zeros(66, dtype=torch.uint8), "IQ2_XXS", (256,))
    with pytest.raises(LlmkitError, match="unknown GGML tensor type 'Q9_9'"):
        dequantize(torch.zeros(34, dtype=torch.uint8), "Q9_9", (32,))
    with pytest.raises(LlmkitError, match="needs 68 bytes, got 34"):
        dequantize(torch.zeros(34, dtype=torch.uint8), "Q8_0", (2, 32))
    with pytest.raises(LlmkitError, match="not a whole number of 32-blocks"):
        dequantize(torch.zeros(34, dtype=torch.uint8), "Q8_0", (1, 33))


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_1"])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_quantize_is_byte_identical_to_gguf_py(kind, scale):
    from llmkit.quant.ggml import quantize

    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(0)) * scale
    w[3] = 0.0  # all-zero blocks (d = 0)
    w[5, :32] = 2.5 * scale  # a constant block
    w[7, :32] = torch.arange(32) * 0.5 * scale  # exact halves: rounding ties
    oracle = gguf.quants.quantize(w.numpy(), getattr(gguf.GGMLQuantizationType, kind))
    assert np.array_equal(quantize(w, kind).numpy(), oracle)


def test_quantize_refuses_rows_that_are_not_whole_blocks():
    from llmkit.quant.ggml import quantize

    with pytest.raises(LlmkitError, match="multiple of 32"):
        quantize(torch.zeros(2, 40), "Q8_0")
    with pytest.raises(LlmkitError, match="not supported"):
        quantize(torch.zeros(2, 256), "Q4_K")

"""Quantized linear layers: error bounds of the formats, fast kernels against the readable path,
and the quality check on the real SmolLM2 (top-1 agreement with float32 >= 95%)."""

from __future__ import annotations

import pytest
import torch

from llmkit.io.gguf import llama_state_dict, open_gguf
from llmkit.load import build_model
from llmkit.quant.linear import Bf16Linear, Int4Linear, Int8Linear, int4_dequantize, int4_quantize, int8_dequantize, int8_quantize
from llmkit.tokenize import from_gguf_metadata

PROSE = (
    "Rivers shape the land they cross. Over thousands of years, water carries sand and silt from the "
    "mountains to the sea, carving valleys and building deltas where it slows down. Farmers have always "
    "settled near rivers because floods leave fertile soil behind, although the same floods can destroy "
    "villages in a single night. Ancient Egypt depended on the yearly rise of the Nile; its calendar, its "
    "taxes and even its religion followed the rhythm of the water. Today engineers build dams to control "
    "floods and produce electricity, but dams also trap sediment, so deltas shrink and coastlines retreat. "
    "Fish that swim upstream to lay their eggs find their way blocked, and some species have nearly "
    "vanished. Cities now study how to give rivers more room: parks that may flood, wetlands that soak up "
    "storms, and old channels opened again. A healthy river is not a straight canal but a moving system "
    "of bends, islands and pools, full of life, that changes a little every season. Children who grow up "
    "near such rivers learn to read the water: the colour after a storm, the sound of a rapid, the smell "
    "of mud in spring. Writers and painters return to rivers again and again, because a river is both the "
    "same and never the same, as Heraclitus said more than two thousand years ago. Every map of a country "
    "is also, quietly, a map of its rivers."
)


def _weights(n: int = 96, k: int = 128) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 2.0, n)[:, None]


def test_int8_error_is_at_most_half_a_step():
    w = _weights()
    q, scale = int8_quantize(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert ((int8_dequantize(q, scale) - w).abs() <= scale[:, None] / 2 + 1e-6).all()


def test_int4_error_is_at_most_half_a_step_per_group():
    w = _weights()
    q, scale, low = int4_quantize(w, group=32)
    assert q.min() >= 0 and q.max() <= 15
    error = (int4_dequantize(q, scale, low) - w).abs().reshape(96, 4, 32)
    assert (error <= scale[..., None] / 2 + 1e-6).all()


@pytest.mark.parametrize("layer_cls", [Int8Linear, Int4Linear])
def test_fast_kernel_equals_the_readable_path(layer_cls):
    w, bias = _weights(), torch.randn(96)
    x = torch.randn(3, 5, 128, generator=torch.Generator().manual_seed(1))
    layer = layer_cls(w, bias)
    fast = layer(x)
    layer.fast = False
    readable = layer(x)
    # the kernels take bfloat16 activations: agreement within bfloat16 rounding of the inputs
    assert fast.shape == (3, 5, 96)
    assert (fast - readable).abs().max() <= 1e-2 * readable.abs().max()


def test_bf16_linear_prefill_is_exact_and_decode_within_bf16_rounding():
    w, bias = _weights(), torch.randn(96)
    layer = Bf16Linear(w, bias)
    readable = lambda x: torch.nn.functional.linear(x, w.bfloat16().float(), bias)  # noqa: E731
    many = torch.randn(1, 40, 128, generator=torch.Generator().manual_seed(2))  # > PREFILL_ROWS: float32 GEMM
    assert torch.equal(layer(many), readable(many))
    one = many[:, :1]  # decoding: bfloat16 GEMV
    assert (layer(one) - readable(one)).abs().max() <= 1e-2 * readable(one).abs().max()


def test_int4_kernel_weights_are_the_format_dequantized():
    w = _weights()
    layer = Int4Linear(w, None)
    expected = int4_dequantize(*int4_quantize(w))
    assert (layer.dequantized() - expected).abs().max() <= 1e-2 * w.abs().max()  # bfloat16 scales


@pytest.fixture(scope="module")
def smollm2_parts(smollm2_gguf):
    gguf = open_gguf(smollm2_gguf)
    ids = from_gguf_metadata(gguf.metadata).encode(PROSE, add_special=False)
    assert len(ids) >= 257
    spec, state = gguf.spec(), llama_state_dict(gguf)
    with torch.inference_mode():
        reference = build_model(spec, state, "fp32")(torch.tensor([ids[:257]])).argmax(-1)[0, :256]
    return spec, state, ids[:257], reference


@pytest.mark.parametrize("precision", ["int8", "int4", "bf16"])
def test_top1_agreement_with_float32_on_smollm2(smollm2_parts, precision):
    spec, state, ids, reference = smollm2_parts
    model = build_model(spec, state, precision)
    with torch.inference_mode():
        got = model(torch.tensor([ids])).argmax(-1)[0, :256]
    agreement = float((got == reference).float().mean())
    assert agreement >= 0.95, f"{precision}: top-1 agreement {agreement:.3f} over 256 positions"

"""Packed linear layers: GGML's own blocks, products equal to the dequantized weights', the GGUF's
tensors kept as stored, and the quality check on the real SmolLM2 (top-1 agreement with float32 >= 95%)."""

from __future__ import annotations

import gguf.quants as gq
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType

from llmkit import kernels
from llmkit.io.gguf import llama_state_dict, open_gguf
from llmkit.load import build_model, load
from llmkit.quant.linear import PackedEmbedding, PackedLinear
from llmkit.tokenize import from_gguf_metadata

GGUF_TYPES = {"q8_0": GGMLQuantizationType.Q8_0, "q4_1": GGMLQuantizationType.Q4_1}

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


@pytest.mark.parametrize("fmt", ["q8_0", "q4_1"])
def test_packed_blocks_are_ggmls_own(fmt):
    w = _weights()
    layer = PackedLinear.from_weight(w, fmt)
    oracle = gq.quantize(w.numpy(), GGUF_TYPES[fmt])  # llama.cpp's reference quantizer, byte for byte
    assert np.array_equal(layer.data.numpy(), oracle)
    expected = torch.from_numpy(gq.dequantize(oracle, GGUF_TYPES[fmt])).reshape(w.shape)
    assert torch.equal(layer.dequantized(), expected)


@pytest.mark.parametrize("fmt", ["f32", "bf16", "q8_0", "q4_1"])
@pytest.mark.parametrize("rows", [1, 5, 40])  # decoding (the kernel) and prefill (dequantize + GEMM)
def test_packed_linear_is_x_times_its_dequantized_weights(fmt, rows):
    w, bias = _weights(), torch.randn(96, generator=torch.Generator().manual_seed(1))
    layer = PackedLinear.from_weight(w, fmt, bias)
    x = torch.randn(1, rows, 128, generator=torch.Generator().manual_seed(2))
    expected = torch.nn.functional.linear(x.double(), layer.dequantized().double(), bias.double())
    got = layer(x)
    assert got.shape == (1, rows, 96)
    bound = 1e-4 if fmt.startswith("q") and rows <= layer.KERNEL_MAX_ROWS else 1e-5  # int16 activations (cpu.c)
    assert (got.double() - expected).abs().max() <= bound * expected.abs().max()


def test_without_the_kernels_the_layer_dequantizes(monkeypatch):
    w = _weights()
    layer = PackedLinear.from_weight(w, "q4_1")
    x = torch.randn(1, 1, 128, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(kernels, "enabled", lambda: False)
    expected = torch.nn.functional.linear(x, layer.dequantized())
    assert torch.equal(layer(x), expected)


def test_a_packed_embedding_looks_rows_up_from_the_heads_blocks():
    head = PackedLinear.from_weight(_weights(), "q8_0")
    ids = torch.tensor([[0, 95, 7], [7, 7, 1]])
    assert torch.equal(PackedEmbedding(head)(ids), head.dequantized()[ids])


def test_int4_from_the_q4_1_gguf_holds_exactly_the_files_weights(smollm2_gguf):
    gguf = open_gguf(smollm2_gguf)
    model = load(smollm2_gguf, "int4").model
    v = model.blocks[0].attn.v
    assert v.fmt == "q4_1" and torch.equal(v.data.reshape(-1), gguf.raw("blk.0.attn_v.weight"))  # as stored
    q = model.blocks[0].attn.q.dequantized()  # rows back in HF order: the fp32 loader's tensor
    assert torch.equal(q, llama_state_dict(gguf)["blocks.0.attn.q.weight"])
    assert model.lm_head.fmt == "q8_0" and torch.equal(model.lm_head.data.reshape(-1), gguf.raw("token_embd.weight"))


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

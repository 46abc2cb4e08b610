"""calc.formats against gguf-py's block sizes, the real SmolLM2 GGUF, llama.cpp's mix rules and published files."""

from __future__ import annotations

import math
import re

import gguf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit import zoo
from llmkit.calc.formats import (
    FORMATS,
    GGML_TYPES,
    format_bytes,
    format_tensor_bytes,
    ggml_row_bytes,
    ggml_tensor_bytes,
    gguf_mix_bytes,
    use_more_bits,
)
from llmkit.calc.params import tensors
from llmkit.errors import LlmkitError
from llmkit.spec import from_gguf_metadata


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    """The real SmolLM2 GGUF read by the oracle: its tensors and the spec built from its metadata."""
    reader = gguf.GGUFReader(smollm2_gguf)
    meta = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.")}
    spec = from_gguf_metadata(meta, {t.name for t in reader.tensors})
    return reader, spec


_GGUF_NAMES = [
    (r"model\.embed_tokens\.weight", "token_embd.weight"),
    (r"model\.norm\.weight", "output_norm.weight"),
    (r"lm_head\.weight", "output.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.weight", r"blk.\1.attn_\2.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.weight", r"blk.\1.attn_output.weight"),
    (r"model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight", r"blk.\1.ffn_\2.weight"),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", r"blk.\1.attn_norm.weight"),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", r"blk.\1.ffn_norm.weight"),
]


def gguf_name(hf_name: str) -> str:
    """llama.cpp's name of a LLaMA tensor (convert_hf_to_gguf's tensor map)."""
    for pattern, repl in _GGUF_NAMES:
        if re.fullmatch(pattern, hf_name):
            return re.sub(pattern, repl, hf_name)
    raise AssertionError(f"no GGUF name for {hf_name}")


def test_every_gguf_type_has_gguf_py_block_and_type_size():
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        ours = GGML_TYPES[qtype.name]
        assert (ours.block_size, ours.type_size) == (block, size), qtype.name
    assert set(GGML_TYPES) <= {q.name for q in gguf.GGML_QUANT_SIZES}


@settings(max_examples=200, deadline=None)
@given(qtype=st.sampled_from(sorted(gguf.GGML_QUANT_SIZES, key=lambda q: q.value)),
       rows=st.integers(1, 9), blocks=st.integers(1, 9), experts=st.integers(1, 3))
def test_tensor_bytes_equal_gguf_byte_shapes(qtype, rows, blocks, experts):
    """gguf-py's quant_shape_to_byte_shape (numpy order: last dim = a row of whole blocks)."""
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    numpy_shape = (experts, rows, blocks * block)
    expected = math.prod(gguf.quant_shape_to_byte_shape(numpy_shape, qtype))
    assert ggml_tensor_bytes(qtype.name, numpy_shape[::-1]) == expected


def test_tensor_bytes_equal_the_real_files_tensor_sizes(smollm2):
    reader, _ = smollm2
    types = set()
    for t in reader.tensors:
        types.add(t.tensor_type.name)
        assert ggml_tensor_bytes(t.tensor_type.name, [int(n) for n in t.shape]) == t.n_bytes, t.name
    assert types == {"Q4_1", "Q8_0", "F32"}


def test_q4_1_mix_assigns_the_files_types_tensor_by_tensor(smollm2):
    """llama.cpp Q4_1: tied token_embd takes the output rule (Q6_K -> Q8_0: 576 is not whole 256-blocks)."""
    reader, spec = smollm2
    file_types = {t.name: t.tensor_type.name for t in reader.tensors}
    est = gguf_mix_bytes(spec, tensors(spec), "Q4_1")
    ours = {gguf_name(t.name): t.type for t in est.tensors}
    assert ours == file_types
    assert est.total_bytes == sum(int(t.n_bytes) for t in reader.tensors)


def test_q4_k_m_on_smollm2_falls_back_where_rows_are_not_whole_super_blocks(smollm2):
    """tensor_type_fallback: 576 columns are not a multiple of 256, so Q4_K -> Q5_0 and Q6_K -> Q8_0."""
    _, spec = smollm2
    types = {t.name: t.type for t in gguf_mix_bytes(spec, tensors(spec), "Q4_K_M").tensors}
    assert types["model.embed_tokens.weight"] == "Q8_0"  # tied: output rule Q6_K, 576 % 256 != 0
    assert types["model.layers.5.self_attn.q_proj.weight"] == "Q5_0"  # Q4_K, 576 columns
    assert types["model.layers.0.self_attn.v_proj.weight"] == "Q8_0"  # use_more_bits -> Q6_K -> Q8_0
    assert types["model.layers.0.mlp.down_proj.weight"] == "Q6_K"  # 1536 columns = 6 super-blocks
    assert types["model.layers.5.mlp.down_proj.weight"] == "Q6_K"  # 30 layers: (5 - 30//8) % 3 == 2
    assert types["model.layers.6.mlp.down_proj.weight"] == "Q4_K"  # (6 - 3) % 3 == 0
    assert types["model.layers.5.input_layernorm.weight"] == "F32"


def test_use_more_bits_marks_first_and_last_eighth_and_every_third_layer():
    chosen = [i for i in range(32) if use_more_bits(i, 32)]
    assert chosen == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]


@pytest.mark.parametrize(
    ("mix", "published_gb"),
    # TheBloke/Llama-2-7B-GGUF and TheBloke/LLaMA-7b-GGUF file lists (same tensor shapes).
    [("q4_k_m", 4.08), ("q5_k_m", 4.78), ("q4_0", 3.83), ("q8_0", 7.16), ("q3_k_m", 3.30), ("q6_k", 5.53)],
)
def test_llama2_7b_file_sizes_match_published_gguf_files(mix, published_gb):
    spec = zoo.get("llama-2-7b")
    est = format_bytes(spec, tensors(spec), mix)
    assert round(est.total_bytes / 1e9, 2) == published_gb


@pytest.mark.parametrize(("mix", "published_gb"), [("q4_0", 26.44), ("q6_k", 38.38), ("q8_0", 49.62)])
def test_mixtral_stacked_experts_match_published_gguf_files(mix, published_gb):
    """TheBloke/Mixtral-8x7B-v0.1-GGUF; 8 experts: attn_v and attn_k go to Q8_0 (llama-quant.cpp)."""
    spec = zoo.get("mixtral-8x7b")
    est = format_bytes(spec, tensors(spec), mix)
    assert est.total_bytes / 1e9 == pytest.approx(published_gb, abs=0.01)


def test_nf4_bits_per_weight_are_the_qlora_papers():
    """QLoRA sec. 3: NF4 blocks of 64 with fp32 absmax = 4.5 bits; double quantization 4 + 8/64 + 32/(64*256)."""
    assert FORMATS["nf4"].bits_per_weight == 4.5
    assert FORMATS["nf4-dq"].bits_per_weight == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert round(FORMATS["nf4-dq"].bits_per_weight, 3) == 4.127


def test_blocks_are_whole():
    assert format_tensor_bytes("nf4", (3, 50)) == math.ceil(150 / 64) * 36  # flat blocks, last one padded
    assert format_tensor_bytes("int8", (3, 50)) == 150 + 3 * 4  # one fp32 scale per row
    assert ggml_row_bytes("Q8_0", 64) == 2 * 34
    with pytest.raises(LlmkitError, match="whole number of Q4_K blocks"):
        ggml_row_bytes("Q4_K", 576)


def test_bitsandbytes_formats_keep_embeddings_head_and_norms_in_16_bit():
    spec = zoo.get("llama-2-7b")
    inv = tensors(spec)
    est = format_bytes(spec, inv, "int8")
    kept = [t for t in inv if t.role in ("embed", "head", "norm")]
    assert est.by_type["fp16"] == 2 * sum(t.numel for t in kept)
    linear = [t for t in inv if t.role not in ("embed", "head", "norm")]
    assert est.by_type["int8"] == sum(t.numel + 4 * t.shape[0] for t in linear)


def test_unknown_format_names_close_matches():
    spec = zoo.get("gpt2")
    with pytest.raises(LlmkitError, match="q4_k_m"):
        format_bytes(spec, tensors(spec), "q4_km")

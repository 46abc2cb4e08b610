"""calc.memory_infer: weights per format + KV cache + workspace, against the LLaMA-2-7B reference values."""

from __future__ import annotations

import pytest

from llmkit import zoo
from llmkit.calc.kvcache import kv_cache_bytes
from llmkit.calc.memory_infer import InferSettings, infer_memory
from llmkit.errors import LlmkitError


def test_llama2_7b_fp16_4096_tokens():
    """Anchors §3.3: weights 13,476,831,232 B (2 B x 6,738,415,616), KV 2,147,483,648 B."""
    est = infer_memory(zoo.get("llama-2-7b"), InferSettings(format="fp16", seq_len=4096))
    assert est.breakdown["weights_bytes"] == 2 * 6_738_415_616
    assert est.breakdown["kv_cache_bytes"] == 2 * 2**30
    assert est.total_bytes == sum(est.breakdown.values())
    assert 15.6e9 < est.total_bytes < 16.2e9  # anchors: ≈15.9 GB before runtime overhead


def test_quantized_weights_and_kv_dtype_are_independent():
    spec = zoo.get("llama-2-7b")
    q = infer_memory(spec, InferSettings(format="q4_k_m", seq_len=4096, kv_dtype="q8_0"))
    assert round(q.breakdown["weights_bytes"] / 1e9, 2) == 4.08
    assert q.breakdown["kv_cache_bytes"] == kv_cache_bytes(spec, 4096, 1, "q8_0")


def test_eager_attention_adds_the_fp32_score_matrix():
    spec = zoo.get("gpt2")
    fused = infer_memory(spec, InferSettings(seq_len=1024)).breakdown["activations_bytes"]
    eager = infer_memory(spec, InferSettings(seq_len=1024, fused_attention=False)).breakdown["activations_bytes"]
    assert eager - fused == 12 * 1024 * 1024 * 4 - (1024 * 3072 * 2 - 1024 * 3 * 768 * 2)


def test_encoder_has_no_kv_cache():
    est = infer_memory(zoo.get("bert-base-uncased"), InferSettings(format="fp32", seq_len=512))
    assert est.breakdown["kv_cache_bytes"] == 0
    assert est.breakdown["weights_bytes"] == 4 * 109_482_240


@pytest.mark.parametrize(("kwargs", "message"), [({"format": "q4_km"}, "q4_k_m"), ({"seq_len": 0}, "seq_len"),
                                                 ({"kv_dtype": "int4"}, "kv_dtype")])
def test_bad_settings(kwargs, message):
    with pytest.raises(LlmkitError, match=message):
        InferSettings(**kwargs)

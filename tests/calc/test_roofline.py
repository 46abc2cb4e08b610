"""calc.roofline against the anchors' hand-worked A100 LLaMA-2-7B table (§3.4) and exact inverse solves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit import zoo
from llmkit.calc.hardware import get_device
from llmkit.calc.memory_infer import InferSettings, infer_memory
from llmkit.calc.roofline import (
    RooflineSettings,
    decode_step,
    fit,
    generate,
    max_batch,
    max_context,
    prefill,
    workload,
)
from llmkit.errors import LlmkitError


@pytest.fixture(scope="module")
def llama():
    spec = zoo.get("llama-2-7b")
    return spec, workload(spec, "fp16")


def test_a100_llama2_7b_prompt_3968_generate_128(llama):
    """Anchors §3.4 (roofline, 100 %): prefill 0.195 s, decode 7.66 ms at 4096, 130 tok/s, end to end 1.17 s."""
    _, work = llama
    full = RooflineSettings(causal=False)
    p = prefill(work, "a100-80gb", 3968, settings=full)
    assert p.seconds == pytest.approx(0.195, abs=5e-4) and p.bound == "compute"
    d = decode_step(work, "a100-80gb", 4096)
    assert d.seconds * 1e3 == pytest.approx(7.66, abs=5e-3) and d.bound == "memory"
    assert d.tokens_per_second == pytest.approx(130, abs=1)
    g = generate(work, "a100-80gb", 3968, 128, settings=full)
    assert g.seconds == pytest.approx(1.17, abs=5e-3)


def test_ridge_point_and_the_batch_where_decode_turns_compute_bound(llama):
    """A100-80GB bf16 ridge = 312e12 / 2.039e12 ≈ 153 FLOP/B; decode intensity ≈ batch FLOP/B (16-bit weights)."""
    _, work = llama
    dev = get_device("a100-80gb")
    assert dev.ridge_point("bf16") == pytest.approx(153.0, abs=0.1)
    assert decode_step(work, dev, 16, batch=8).bound == "memory"
    assert decode_step(work, dev, 16, batch=512).bound == "compute"


def test_efficiency_knobs_slow_the_bound_term(llama):
    _, work = llama
    ideal = decode_step(work, "a100-80gb", 4096)
    real = decode_step(work, "a100-80gb", 4096, settings=RooflineSettings(bandwidth_efficiency=0.8))
    assert real.seconds == pytest.approx(ideal.seconds / 0.8)
    with pytest.raises(LlmkitError, match="bandwidth_efficiency"):
        RooflineSettings(bandwidth_efficiency=1.5)


def test_fit_on_k_devices(llama):
    spec, _ = llama
    settings = InferSettings(format="fp16", seq_len=4096)
    assert fit(spec, "rtx-4090", 1, settings).fits
    assert not fit(spec, "t4", 1, settings).fits
    assert fit(spec, "t4", 2, settings).fits
    seventy = zoo.get("llama-2-70b")
    assert not fit(seventy, "a100-80gb", 1, settings).fits
    assert fit(seventy, "a100-80gb", 2, settings).fits


def test_max_context_and_batch_are_exact_inverses(llama):
    spec, _ = llama
    budget = 24 * 2**30
    base = InferSettings(format="fp16")
    n = max_context(spec, budget, base)
    assert infer_memory(spec, InferSettings(format="fp16", seq_len=n)).total_bytes <= budget
    assert infer_memory(spec, InferSettings(format="fp16", seq_len=n + 1)).total_bytes > budget
    b = max_batch(spec, 80 * 2**30, InferSettings(format="fp16", seq_len=4096))
    assert infer_memory(spec, InferSettings(format="fp16", seq_len=4096, batch=b)).total_bytes <= 80 * 2**30
    assert infer_memory(spec, InferSettings(format="fp16", seq_len=4096, batch=b + 1)).total_bytes > 80 * 2**30
    assert max_context(spec, 10**9, base) == 0  # the weights alone do not fit


@settings(max_examples=25, deadline=None)
@given(budget=st.integers(300 * 10**6, 4 * 10**9), kv=st.sampled_from(["fp16", "q8_0", "q4_0"]))
def test_max_context_is_the_boundary_for_any_budget(budget, kv):
    spec = zoo.get("gpt2")
    settings_ = InferSettings(format="q8_0", kv_dtype=kv)
    n = max_context(spec, budget, settings_)
    assert infer_memory(spec, InferSettings(format="q8_0", kv_dtype=kv, seq_len=n)).total_bytes <= budget
    assert infer_memory(spec, InferSettings(format="q8_0", kv_dtype=kv, seq_len=n + 1)).total_bytes > budget

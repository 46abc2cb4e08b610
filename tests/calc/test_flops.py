"""calc.flops against torch's FlopCounterMode on tiny transformers models, and the LLaMA-2-7B reference."""

from __future__ import annotations

import pytest
import torch
import transformers as T
from torch.utils.flop_counter import FlopCounterMode

from llmkit import zoo
from llmkit.calc.flops import decode_flops, forward_flops_per_token, mfu, prefill_flops, training_flops
from llmkit.errors import LlmkitError
from llmkit.spec import from_hf_config


@pytest.fixture(scope="module")
def tiny():
    """A tiny GQA LLaMA with eager attention (every score product is a counted matmul)."""
    torch.manual_seed(0)
    config = T.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=101, attn_implementation="eager")
    return T.LlamaForCausalLM(config).eval(), from_hf_config(config.to_dict())


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_prefill_flops_equal_counted_matmuls(tiny):
    """Eager attention multiplies all T x T scores (the mask is added after): the non-causal count."""
    model, spec = tiny
    ids = torch.randint(0, 101, (2, 12))
    with torch.no_grad():
        got = counted(lambda: model(ids))
    assert prefill_flops(spec, 12, batch=2, causal=False).total == got


def test_decode_step_flops_equal_counted_matmuls(tiny):
    model, spec = tiny
    with torch.no_grad():
        cache = model(torch.randint(0, 101, (1, 9)), use_cache=True).past_key_values
        got = counted(lambda: model(torch.randint(0, 101, (1, 1)), cache=cache))
    assert decode_flops(spec, 10).total == got  # the new token attends to 10 keys


def test_training_flops_are_forward_plus_twice_backward(tiny):
    """PaLM's 6N + 12LHQT per token: backward does two matmuls per forward matmul."""
    model, spec = tiny
    ids = torch.randint(0, 101, (1, 12))
    got = counted(lambda: model(ids, labels=ids).loss.backward())
    assert training_flops(spec, tokens=12, seq_len=12).total == got


def test_llama2_7b_forward_at_4096_matches_the_reference_count():
    """Anchors §3.5: matmul 5.4125e13 + attention 8.7961e12 = 6.29e13 (calflops, meta device, eager)."""
    spec = zoo.get("llama-2-7b")
    f = prefill_flops(spec, 4096, causal=False)
    assert f.dense == pytest.approx(5.4125e13, rel=1e-4)
    assert f.attention == 4 * 32 * 4096 * 4096 * 4096 == pytest.approx(8.7961e12, rel=1e-4)
    assert f.total == pytest.approx(6.294e13, rel=1e-3)


def test_causal_counts_each_query_over_its_predecessors():
    spec = zoo.get("gpt2")
    full = prefill_flops(spec, 100, causal=False)
    causal = prefill_flops(spec, 100, causal=True)
    assert causal.attention * 2 * 100 == full.attention * 101  # T(T+1)/2 pairs against T^2
    assert training_flops(spec, 1000, 100, causal=True).attention < training_flops(spec, 1000, 100).attention


def test_sliding_window_caps_the_attended_context():
    spec = zoo.get("mistral-7b")
    assert forward_flops_per_token(spec, 10_000).attention == forward_flops_per_token(spec, 4096).attention


def test_mfu_from_a_measured_throughput():
    spec = zoo.get("llama-2-7b")
    per_token = training_flops(spec, 4096, 4096).total / 4096
    assert mfu(spec, 1000.0, 312e12, 4096) == pytest.approx(1000 * per_token / 312e12)
    with pytest.raises(LlmkitError):
        mfu(spec, -1.0, 312e12, 4096)

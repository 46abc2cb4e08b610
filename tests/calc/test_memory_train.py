"""calc.memory_train against the ZeRO paper, Korthikanti et al. and the optimizers' real state tensors."""

from __future__ import annotations

import pytest
import torch
import transformers as T

from llmkit import zoo
from llmkit.calc.memory_train import (
    TrainSettings,
    activation_bytes,
    model_states,
    optimizer_state_elements,
    state_bytes,
    train_memory,
)
from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec


def gelu_block_spec() -> ModelSpec:
    """Korthikanti et al.'s block: GELU MLP with d_ff = 4h, dropout; LLaMA-2-7B's h, a, L."""
    return ModelSpec(name="korthikanti", family="decoder", d_model=4096, n_layers=32, n_heads=32, vocab_size=32000,
                     d_ff=4 * 4096, hf_model_type="gpt2")


def test_activations_reproduce_korthikanti_table2():
    """sbh(34 + 5as/h) per layer without recompute, 34 sbh selective, 2 sbh full (+ one layer's working set)."""
    spec, s, b, h, a, L = gelu_block_spec(), 4096, 1, 4096, 32, 32
    none, _ = activation_bytes(spec, TrainSettings(seq_len=s, batch=b))
    selective, _ = activation_bytes(spec, TrainSettings(seq_len=s, batch=b, recompute="selective"))
    full, _ = activation_bytes(spec, TrainSettings(seq_len=s, batch=b, recompute="full"))
    per_layer = s * b * h * 34 + 5 * a * s * s * b
    assert none == L * per_layer == 104_152_956_928
    assert selective == L * 34 * s * b * h == 18_253_611_008
    assert full == L * 2 * s * b * h + per_layer


def test_flash_attention_drops_the_s_squared_terms_and_keeps_fp32_lse():
    spec, s, a, L = gelu_block_spec(), 2048, 32, 32
    flash, _ = activation_bytes(spec, TrainSettings(seq_len=s, flash_attention=True))
    selective, _ = activation_bytes(spec, TrainSettings(seq_len=s, recompute="selective"))
    assert flash == selective + L * 4 * a * s


def test_swiglu_block_without_dropout():
    """LLaMA-2-7B: attention 10 sbh + 2as²b, SwiGLU 2 sbh + 8 sbf, norms 4 sbh (module docstring)."""
    spec = zoo.get("llama-2-7b")
    s, h, f, a = 1024, 4096, 11008, 32
    got, how = activation_bytes(spec, TrainSettings(seq_len=s))
    assert got == 32 * (s * (10 * h + 2 * h + 8 * f + 4 * h) + 2 * a * s * s)
    assert "no dropout" in how


def test_zero_paper_figure1_per_device_model_states():
    """ZeRO Fig. 1: Ψ = 7.5B, N = 64, K = 12: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB."""
    shapes = [(7_500_000_000,)]
    gb = []
    for stage in (0, 1, 2, 3):
        st = model_states(shapes, TrainSettings(zero_stage=stage, n_devices=64))
        gb.append(round((st.weights_bytes + st.master_weights_bytes + st.gradients_bytes + st.optimizer_bytes) / 1e9, 1))
    assert gb == [120.0, 31.4, 16.6, 1.9]


@pytest.mark.parametrize(("convention", "per_param"), [("zero-16", 16), ("fp32-grads-18", 18), ("deepspeed-20", 20)])
def test_adam_mixed_precision_conventions(convention, per_param):
    sb = state_bytes("mixed-bf16", "adamw", convention)
    assert sb.weights + sb.master + sb.gradients + 2 * sb.state_element == per_param


def test_bytes_per_param_for_other_optimizers():
    """Transformer Math 101: 8-bit Adam states 2 B, SGD-momentum 4 B; fp32 Adam is the sheet's 16 B."""
    assert state_bytes("mixed-bf16", "adam-8bit").state_element * 2 == 2
    fp32 = state_bytes("fp32", "adam")
    assert fp32.weights + fp32.gradients + 2 * fp32.state_element == 16


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = T.LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=64)
    return T.LlamaForCausalLM(config)


def _state_elements(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    model(torch.randint(0, 64, (1, 8)), labels=torch.randint(0, 64, (1, 8))).loss.backward()
    optimizer.step()
    return sum(v.numel() for state in optimizer.state.values() for k, v in state.items()
               if torch.is_tensor(v) and k not in ("step", "RMS"))


@pytest.mark.parametrize(
    ("name", "make"),
    [("adamw", lambda p: torch.optim.AdamW(p)), ("sgd-momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
     ("sgd", lambda p: torch.optim.SGD(p, lr=0.1)),
     ("adafactor", lambda p: T.optimization.Adafactor(p, lr=1e-3, relative_step=False))],
)
def test_optimizer_state_elements_equal_the_real_optimizers(name, make):
    model = _tiny_model()
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert optimizer_state_elements(name, shapes) == _state_elements(model, make(model.parameters()))


def test_train_memory_breakdown_keys_and_total():
    est = train_memory(zoo.get("llama-2-7b"), TrainSettings(seq_len=4096))
    b = est.breakdown
    assert {"weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes"} <= set(b)
    assert est.total_bytes == sum(b.values())
    assert b["weights_bytes"] == 2 * 6_738_415_616
    assert b["weights_bytes"] + b["master_weights_bytes"] + b["gradients_bytes"] + b["optimizer_bytes"] \
        == 16 * 6_738_415_616


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"zero_stage": 4}, "zero_stage"), ({"optimizer": "adamax"}, "optimizer"), ({"seq_len": -3}, "seq_len"),
     ({"precision": "fp64"}, "precision"), ({"convention": "17"}, "convention")],
)
def test_bad_settings_name_the_field_and_the_allowed_values(kwargs, message):
    with pytest.raises(LlmkitError, match=message):
        TrainSettings(**kwargs)

"""io/hf.py: HF tensor names and layouts -> llmkit's, checked against what transformers computes."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as T

from llmkit.errors import LlmkitError
from llmkit.io.hf import NAME_MAPS, convert_name, hf_to_llmkit, safetensors_files
from llmkit.load import build_model
from llmkit.spec import from_hf_config


def _spec_and_state(hf):
    spec = from_hf_config(hf.config.to_dict())
    return spec, hf_to_llmkit(hf.state_dict(), spec)


def test_gpt2_conv1d_qkv_is_transposed_and_split_like_transformers():
    torch.manual_seed(0)
    hf = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=4, n_positions=16)).eval()
    _, state = _spec_and_state(hf)
    x = torch.randn(5, 32)
    fused = hf.transformer.h[0].attn.c_attn(x)  # [5, 3 d]: Conv1D computes x W + b
    for part, chunk in zip("qkv", fused.split(32, dim=-1)):
        w, b = state[f"blocks.0.attn.{part}.weight"], state[f"blocks.0.attn.{part}.bias"]
        assert torch.allclose(x @ w.T + b, chunk, atol=1e-6)


def test_phi3_fused_qkv_and_gate_up_split_like_transformers():
    torch.manual_seed(0)
    config = T.Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    hf = T.Phi3ForCausalLM(config).eval()
    _, state = _spec_and_state(hf)
    x = torch.randn(5, 32)
    q, k, v = hf.model.layers[0].self_attn.qkv_proj(x).split([32, 16, 16], dim=-1)
    for part, expected in zip("qkv", (q, k, v)):
        assert torch.allclose(x @ state[f"blocks.0.attn.{part}.weight"].T, expected, atol=1e-6)
    gate, up = hf.model.layers[0].mlp.gate_up_proj(x).chunk(2, dim=-1)  # Phi3MLP's own split
    assert torch.allclose(x @ state["blocks.0.ffn.gate.weight"].T, gate, atol=1e-6)
    assert torch.allclose(x @ state["blocks.0.ffn.up.weight"].T, up, atol=1e-6)


def test_task_heads_are_left_out_and_the_base_model_prefix_accepted():
    torch.manual_seed(0)
    config = T.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                          intermediate_size=48, max_position_embeddings=16, num_labels=3)
    hf = T.BertForSequenceClassification(config).eval()  # bert.* names plus classifier.*
    spec, state = _spec_and_state(hf)
    model = build_model(spec, state)
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        assert torch.allclose(model(ids), hf.bert(ids).last_hidden_state, atol=1e-5)


def test_an_unknown_tensor_is_named():
    hf = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=4, n_positions=16))
    spec = from_hf_config(hf.config.to_dict())
    with pytest.raises(LlmkitError, match="transformer.h.0.mystery"):
        hf_to_llmkit({"transformer.h.0.mystery.weight": torch.zeros(2)}, spec)


def test_every_table_row_names_llmkit_parameters():
    assert convert_name("model.decoder.layers.3.encoder_attn.out_proj.bias", NAME_MAPS["bart"]) == (
        "blocks.3.cross.o.bias", "copy")
    assert convert_name("encoder.block.0.layer.1.DenseReluDense.wi_0.weight", NAME_MAPS["t5"]) == (
        "encoder.blocks.0.ffn.gate.weight", "copy")
    assert convert_name("encoder.layer.2.attention.self.query.bias", NAME_MAPS["bert"]) == (
        "blocks.2.attn.q.bias", "copy")


def test_shard_index_names_the_files_and_missing_shards(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"")
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}))
    with pytest.raises(LlmkitError, match="b.safetensors"):
        safetensors_files(tmp_path)
    (tmp_path / "b.safetensors").write_bytes(b"")
    assert [f.name for f in safetensors_files(tmp_path)] == ["a.safetensors", "b.safetensors"]

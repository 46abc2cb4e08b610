"""load_model: GGUF files, HF directories, and clear errors for anything else."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llmkit.errors import LlmkitError
from llmkit.io.gguf import open_gguf
from llmkit.load import load, load_model


def test_gguf_loads_as_an_eval_module_with_tokenizer_and_template(smollm2_gguf):
    loaded = load(smollm2_gguf, precision="fp32")
    assert not loaded.model.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in loaded.model.parameters())
    assert loaded.spec == open_gguf(smollm2_gguf).spec()
    assert loaded.tokenizer.eos_id is not None and "<|im_start|>" in loaded.chat_template.source
    assert loaded.model.lm_head is None  # tied: the head is embed.weight


def test_bf16_holds_matrices_in_bf16_and_computes_in_float32(smollm2_gguf):
    model = load_model(smollm2_gguf, precision="bf16")
    state = model.state_dict()
    matrices = [name for name, t in state.items() if t.dim() == 2]
    assert len(matrices) == 7 * model.spec.n_layers + 2  # 7 per block, the table and the head
    assert all(state[name].dtype == torch.bfloat16 for name in matrices)
    assert state["embed.weight"].data_ptr() == state["lm_head.weight"].data_ptr()  # tied: one table
    assert model.activation_dtype == torch.float32 and state["norm.weight"].dtype == torch.float32


def test_hf_directory_loads_and_matches_transformers(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    hf = LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    ids = torch.randint(0, 96, (2, 9))
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_errors_name_the_problem(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(LlmkitError, match="not a GGUF file"):
        load_model(text)
    with pytest.raises(LlmkitError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(LlmkitError, match="no such file"):
        load_model(tmp_path / "missing.gguf")

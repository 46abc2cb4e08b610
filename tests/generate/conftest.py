"""Session fixtures: SmolLM2 in llmkit and in transformers (the oracle), and tiny random models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmkit.load import LoadedModel, load


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path) -> LoadedModel:
    """llmkit's SmolLM2-135M-Instruct in float32, with tokenizer and chat template."""
    return load(smollm2_gguf, precision="fp32")


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_gguf: Path):
    """transformers' SmolLM2 from the same GGUF, float32 (its GGUF loader dequantizes with gguf-py)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, dtype=torch.float32
    )
    return model.eval()


@pytest.fixture(scope="session")
def hf_tokenizer(smollm2_gguf: Path):
    """transformers' tokenizer built from the same GGUF."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)


@pytest.fixture(scope="session")
def tiny_llama():
    """(transformers LlamaForCausalLM, the same weights in llmkit): 2 layers, GQA 4/2, vocab 128, random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmkit.io.hf import llama_state_dict
    from llmkit.load import build_model
    from llmkit.spec import from_hf_config

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True)
    hf = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # weights larger than the default init: varied, untied argmaxes
        for p in hf.parameters():
            p.normal_(0.0, 0.15) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    spec = from_hf_config(config.to_dict())
    return hf, build_model(spec, llama_state_dict(hf.state_dict(), spec))


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Run these tests on one intra-op thread, restored afterwards: on a loaded 2-core machine a 2-thread GEMM
    of a few rows waits ~15 ms at an OpenMP barrier (batch-4 linear 15.5 ms vs 0.26 ms on one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

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

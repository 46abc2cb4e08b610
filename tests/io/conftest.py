"""Fixtures for GGUF tests: the real SmolLM2 file opened once by us and once by the oracle (gguf-py)."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from llmkit.io.gguf import GGUFFile, open_gguf


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path) -> GGUFFile:
    """The real SmolLM2 GGUF, opened by llmkit."""
    return open_gguf(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2_reader(smollm2_gguf: Path) -> gguf.GGUFReader:
    """The real SmolLM2 GGUF, opened by the oracle (gguf-py's GGUFReader, a few seconds)."""
    return gguf.GGUFReader(smollm2_gguf)

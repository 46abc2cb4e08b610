"""llmkit: the Transformer & LLM cheat sheet made executable.

The planner (``llmkit.spec``, ``llmkit.zoo``, ``llmkit.calc``, ``llmkit.advise``)
is pure Python and imports no torch. The engine (``nn``, ``io``, ``quant``,
``tokenize``, ``generate``, ...) runs real models in PyTorch; it is imported
lazily so that ``import llmkit`` stays instant.
"""

from __future__ import annotations

from typing import Any

from llmkit.spec import ModelSpec, SpecError

__version__ = "0.1.0"
__all__ = ["ModelSpec", "SpecError", "load_model", "__version__"]


def load_model(source: str, **kwargs: Any) -> Any:
    """Load a model (zoo name, GGUF file or HF directory) as a torch module in eval mode."""
    from llmkit.load import load_model as _load_model

    return _load_model(source, **kwargs)

"""load_model(source): the one door to a model.

    source                          read by                    gives
    a .gguf file                    io.gguf (dequantized)      spec, weights, tokenizer, chat template
    a HF directory (config.json)    io.hf (safetensors)        spec, weights
    a pullable name ("smollm2")     hub.resolve_model_path     -> the cached .gguf

The weights become a :class:`~llmkit.nn.Transformer` built on the meta device and
filled in place (no random init, no copy), held at the chosen precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16", "int8", "int4"]
PRECISIONS: tuple[str, ...] = Precision.__args__  # type: ignore[attr-defined]
DEFAULT_PRECISION: Precision = "fp32"  # the library's default: exact (equal to transformers within 1e-4)
# The commands' default: the fastest path whose top-1 agreement with fp32 is >= 95% over 256
# teacher-forced positions (benchmarks/decode.py: bf16 decodes ~1.6x fp32 at 99-100% agreement).
FASTEST_PRECISION: Precision = "bf16"


@dataclass(frozen=True)
class LoadedModel:
    """A model with what it needs to talk: its tokenizer and chat template (None when the source has none)."""

    model: torch.nn.Module
    spec: ModelSpec
    tokenizer: Any | None
    chat_template: Any | None
    path: Path


def build_model(spec: ModelSpec, state_dict: dict[str, torch.Tensor], precision: Precision = "fp32") -> torch.nn.Module:
    """A Transformer(spec) in eval mode holding ``state_dict``, at ``precision`` (built on meta: no random init)."""
    import torch

    from llmkit.nn import Transformer

    if precision not in PRECISIONS:
        raise LlmkitError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    with torch.device("meta"):
        model = Transformer(spec)
    model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True, assign=True)
    model.init_buffers()
    if precision != "fp32":
        from llmkit.quant.linear import quantize_linears

        quantize_linears(model, precision)
    return model.eval().requires_grad_(False)


def resolve(source: str | Path) -> Path:
    """The file or directory behind ``source``: an existing path, else a pullable name's file (via the hub)."""
    from llmkit.hub import resolve_model_path

    return Path(resolve_model_path(source))


def load_gguf(path: Path, precision: Precision) -> LoadedModel:
    """Model, tokenizer and chat template from one GGUF file."""
    from llmkit.generate import chat
    from llmkit.io.gguf import llama_state_dict, open_gguf
    from llmkit.tokenize import from_gguf_metadata

    gguf = open_gguf(path)
    spec = gguf.spec()
    model = build_model(spec, llama_state_dict(gguf), precision)
    template = chat.from_gguf_metadata(gguf.metadata) if gguf.metadata.get("tokenizer.chat_template") else None
    return LoadedModel(model, spec, from_gguf_metadata(gguf.metadata), template, path)


def load_hf_directory(path: Path, precision: Precision) -> LoadedModel:
    """Model from a HF directory (config.json + *.safetensors); tokenizer.json when present."""
    from llmkit.io.hf import read_hf_checkpoint

    spec, state = read_hf_checkpoint(path)
    return LoadedModel(build_model(spec, state, precision), spec, None, None, path)


def load(source: str | Path, precision: Precision = DEFAULT_PRECISION) -> LoadedModel:
    """Load a GGUF file, a HF directory or a pullable name, with its tokenizer and chat template."""
    path = resolve(source)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise LlmkitError(f"{path}: a model directory needs a config.json (HF layout) next to *.safetensors")
        return load_hf_directory(path, precision)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise LlmkitError(f"{path}: not a GGUF file or a HF model directory")
    return load_gguf(path, precision)


def load_model(source: str | Path, precision: Precision = DEFAULT_PRECISION) -> torch.nn.Module:
    """The model alone (a torch.nn.Module in eval mode) from a GGUF file, HF directory or pullable name."""
    return load(source, precision).model

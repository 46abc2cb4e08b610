"""HF (transformers) checkpoints: each family's tensor names -> llmkit's names.

One small table per layout (``NAME_MAPS``): a row is (HF name pattern, llmkit name, transform).
Transforms reshape what HF stores differently from llmkit's plain ``nn.Linear`` layout:

    "copy"     the tensor as is
    "conv1d"   GPT-2's Conv1D keeps W as [in, out]: transpose to nn.Linear's [out, in]
    "qkv"      a fused [q; k; v] projection (GPT-2 c_attn, Phi-3 qkv_proj): split rows as
               (n_heads d_head, n_kv d_head, n_kv d_head) into ``{part}`` = q, k, v
    "gate_up"  a fused [gate; up] FFN (Phi-3 gate_up_proj): split in halves (Mixtral's stacked
               experts stay fused: nn/ffn.py's MoE keeps gate_up [E, 2 d_ff, d] as transformers 5 does)

llmkit names (see :mod:`llmkit.nn.model`): ``embed``, ``pos_embed``, ``type_embed``, ``embed_norm``,
``blocks.{i}.{attn_norm, attn.{q,k,v,o}, cross_norm, cross.{q,k,v,o}, ffn_norm, ffn.*}``, ``norm``,
``rel_bias``, ``pooler``, ``lm_head``; an encoder-decoder's encoder stack under ``encoder.``.

HF keeps Q/K rows in the half-split RoPE layout already, so no permutation is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch

from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec, from_hf_config

Transform = Literal["copy", "conv1d", "qkv", "gate_up", "conv1d_qkv"]
Row = tuple[str, str | None, Transform]  # (HF pattern, llmkit name or None to drop, transform)
L = r"(\d+)"  # a layer index
WB = r"(weight|bias)"

LLAMA: tuple[Row, ...] = (
    (r"model\.embed_tokens\.weight", "embed.weight", "copy"),
    (rf"model\.layers\.{L}\.input_layernorm\.weight", r"blocks.\1.attn_norm.weight", "copy"),
    (rf"model\.layers\.{L}\.self_attn\.([qkvo])_proj\.{WB}", r"blocks.\1.attn.\2.\3", "copy"),
    (rf"model\.layers\.{L}\.self_attn\.qkv_proj\.{WB}", r"blocks.\1.attn.{part}.\2", "qkv"),  # Phi-3
    (rf"model\.layers\.{L}\.post_attention_layernorm\.weight", r"blocks.\1.ffn_norm.weight", "copy"),
    (rf"model\.layers\.{L}\.mlp\.(gate|up|down)_proj\.{WB}", r"blocks.\1.ffn.\2.\3", "copy"),
    (rf"model\.layers\.{L}\.mlp\.gate_up_proj\.{WB}", r"blocks.\1.ffn.{part}.\2", "gate_up"),  # Phi-3
    (rf"model\.layers\.{L}\.mlp\.gate\.weight", r"blocks.\1.ffn.router.weight", "copy"),  # Mixtral
    (rf"model\.layers\.{L}\.mlp\.experts\.gate_up_proj", r"blocks.\1.ffn.gate_up", "copy"),  # stacked [E, 2 d_ff, d]
    (rf"model\.layers\.{L}\.mlp\.experts\.down_proj", r"blocks.\1.ffn.down", "copy"),  # [E, d, d_ff]
    (r"model\.norm\.weight", "norm.weight", "copy"),
    (r"lm_head\.weight", "lm_head.weight", "copy"),
    (r".*rotary_emb\.inv_freq", None, "copy"),  # derived from the spec, recomputed
)

GPT2: tuple[Row, ...] = (
    (r"(?:transformer\.)?wte\.weight", "embed.weight", "copy"),
    (r"(?:transformer\.)?wpe\.weight", "pos_embed.weight", "copy"),
    (rf"(?:transformer\.)?h\.{L}\.ln_1\.{WB}", r"blocks.\1.attn_norm.\2", "copy"),
    (rf"(?:transformer\.)?h\.{L}\.attn\.c_attn\.{WB}", r"blocks.\1.attn.{part}.\2", "conv1d_qkv"),
    (rf"(?:transformer\.)?h\.{L}\.attn\.c_proj\.{WB}", r"blocks.\1.attn.o.\2", "conv1d"),
    (rf"(?:transformer\.)?h\.{L}\.ln_2\.{WB}", r"blocks.\1.ffn_norm.\2", "copy"),
    (rf"(?:transformer\.)?h\.{L}\.mlp\.c_fc\.{WB}", r"blocks.\1.ffn.up.\2", "conv1d"),
    (rf"(?:transformer\.)?h\.{L}\.mlp\.c_proj\.{WB}", r"blocks.\1.ffn.down.\2", "conv1d"),
    (rf"(?:transformer\.)?ln_f\.{WB}", r"norm.\1", "copy"),
    (r"lm_head\.weight", "lm_head.weight", "copy"),
    (rf"(?:transformer\.)?h\.{L}\.attn\.(masked_)?bias", None, "copy"),  # old checkpoints' causal-mask buffers
)

BERT: tuple[Row, ...] = (  # BertModel / RobertaModel (a "bert." / "roberta." prefix is accepted)
    (r"(?:\w+\.)?embeddings\.word_embeddings\.weight", "embed.weight", "copy"),
    (r"(?:\w+\.)?embeddings\.position_embeddings\.weight", "pos_embed.weight", "copy"),
    (r"(?:\w+\.)?embeddings\.token_type_embeddings\.weight", "type_embed.weight", "copy"),
    (rf"(?:\w+\.)?embeddings\.LayerNorm\.{WB}", r"embed_norm.\1", "copy"),
    (rf"(?:\w+\.)?encoder\.layer\.{L}\.attention\.self\.(query|key|value)\.{WB}", r"blocks.\1.attn.\2.\3", "copy"),
    (rf"(?:\w+\.)?encoder\.layer\.{L}\.attention\.output\.dense\.{WB}", r"blocks.\1.attn.o.\2", "copy"),
    (rf"(?:\w+\.)?encoder\.layer\.{L}\.attention\.output\.LayerNorm\.{WB}", r"blocks.\1.attn_norm.\2", "copy"),
    (rf"(?:\w+\.)?encoder\.layer\.{L}\.intermediate\.dense\.{WB}", r"blocks.\1.ffn.up.\2", "copy"),
    (rf"(?:\w+\.)?encoder\.layer\.{L}\.output\.dense\.{WB}", r"blocks.\1.ffn.down.\2", "copy"),
    (rf"(?:\w+\.)?encoder\.layer\.{L}\.output\.LayerNorm\.{WB}", r"blocks.\1.ffn_norm.\2", "copy"),
    (rf"(?:\w+\.)?pooler\.dense\.{WB}", r"pooler.\1", "copy"),
    (r"(?:\w+\.)?embeddings\.position_ids", None, "copy"),  # buffers
    (r"(?:\w+\.)?embeddings\.token_type_ids", None, "copy"),
)

DISTILBERT: tuple[Row, ...] = (
    (r"(?:distilbert\.)?embeddings\.word_embeddings\.weight", "embed.weight", "copy"),
    (r"(?:distilbert\.)?embeddings\.position_embeddings\.weight", "pos_embed.weight", "copy"),
    (rf"(?:distilbert\.)?embeddings\.LayerNorm\.{WB}", r"embed_norm.\1", "copy"),
    (rf"(?:distilbert\.)?transformer\.layer\.{L}\.attention\.([qkv])_lin\.{WB}", r"blocks.\1.attn.\2.\3", "copy"),
    (rf"(?:distilbert\.)?transformer\.layer\.{L}\.attention\.out_lin\.{WB}", r"blocks.\1.attn.o.\2", "copy"),
    (rf"(?:distilbert\.)?transformer\.layer\.{L}\.sa_layer_norm\.{WB}", r"blocks.\1.attn_norm.\2", "copy"),
    (rf"(?:distilbert\.)?transformer\.layer\.{L}\.ffn\.lin1\.{WB}", r"blocks.\1.ffn.up.\2", "copy"),
    (rf"(?:distilbert\.)?transformer\.layer\.{L}\.ffn\.lin2\.{WB}", r"blocks.\1.ffn.down.\2", "copy"),
    (rf"(?:distilbert\.)?transformer\.layer\.{L}\.output_layer_norm\.{WB}", r"blocks.\1.ffn_norm.\2", "copy"),
    (r"(?:distilbert\.)?embeddings\.position_ids", None, "copy"),
)

T5_STACK = r"(encoder\.|decoder\.)"  # encoder. -> "encoder.", decoder. -> "" (the main stack)
T5: tuple[Row, ...] = (
    (r"shared\.weight", "embed.weight", "copy"),
    (r"(?:encoder|decoder)\.embed_tokens\.weight", None, "copy"),  # the shared table again
    (rf"{T5_STACK}block\.{L}\.layer\.0\.SelfAttention\.([qkvo])\.weight", r"\1blocks.\2.attn.\3.weight", "copy"),
    (rf"{T5_STACK}block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
     r"\1rel_bias.relative_attention_bias.weight", "copy"),
    (rf"{T5_STACK}block\.{L}\.layer\.0\.layer_norm\.weight", r"\1blocks.\2.attn_norm.weight", "copy"),
    (rf"decoder\.block\.{L}\.layer\.1\.EncDecAttention\.([qkvo])\.weight", r"decoder.blocks.\1.cross.\2.weight", "copy"),
    (rf"decoder\.block\.{L}\.layer\.1\.layer_norm\.weight", r"decoder.blocks.\1.cross_norm.weight", "copy"),
    (rf"{T5_STACK}block\.{L}\.layer\.[12]\.DenseReluDense\.(wi|wi_0|wi_1|wo)\.weight",
     r"\1blocks.\2.ffn.\3.weight", "copy"),
    (rf"{T5_STACK}block\.{L}\.layer\.[12]\.layer_norm\.weight", r"\1blocks.\2.ffn_norm.weight", "copy"),
    (rf"{T5_STACK}final_layer_norm\.weight", r"\1norm.weight", "copy"),
    (r"lm_head\.weight", "lm_head.weight", "copy"),
)

BART_STACK = r"model\.(encoder\.|decoder\.)"
BART: tuple[Row, ...] = (
    (r"model\.shared\.weight", "embed.weight", "copy"),
    (r"model\.(?:encoder|decoder)\.embed_tokens\.weight", None, "copy"),  # the shared table again
    (rf"{BART_STACK}embed_positions\.weight", r"\1pos_embed.weight", "copy"),
    (rf"{BART_STACK}layernorm_embedding\.{WB}", r"\1embed_norm.\2", "copy"),
    (rf"{BART_STACK}layers\.{L}\.self_attn\.([qkv])_proj\.{WB}", r"\1blocks.\2.attn.\3.\4", "copy"),
    (rf"{BART_STACK}layers\.{L}\.self_attn\.out_proj\.{WB}", r"\1blocks.\2.attn.o.\3", "copy"),
    (rf"{BART_STACK}layers\.{L}\.self_attn_layer_norm\.{WB}", r"\1blocks.\2.attn_norm.\3", "copy"),
    (rf"{BART_STACK}layers\.{L}\.encoder_attn\.([qkv])_proj\.{WB}", r"\1blocks.\2.cross.\3.\4", "copy"),
    (rf"{BART_STACK}layers\.{L}\.encoder_attn\.out_proj\.{WB}", r"\1blocks.\2.cross.o.\3", "copy"),
    (rf"{BART_STACK}layers\.{L}\.encoder_attn_layer_norm\.{WB}", r"\1blocks.\2.cross_norm.\3", "copy"),
    (rf"{BART_STACK}layers\.{L}\.fc1\.{WB}", r"\1blocks.\2.ffn.up.\3", "copy"),
    (rf"{BART_STACK}layers\.{L}\.fc2\.{WB}", r"\1blocks.\2.ffn.down.\3", "copy"),
    (rf"{BART_STACK}layers\.{L}\.final_layer_norm\.{WB}", r"\1blocks.\2.ffn_norm.\3", "copy"),
    (rf"{BART_STACK}layer_norm\.{WB}", r"\1norm.\2", "copy"),
    (r"lm_head\.weight", "lm_head.weight", "copy"),
    (r"final_logits_bias", "logits_bias", "copy"),
)

NAME_MAPS: dict[str, tuple[Row, ...]] = {
    "llama": LLAMA, "mistral": LLAMA, "mixtral": LLAMA, "qwen2": LLAMA, "phi3": LLAMA,
    "gpt2": GPT2, "bert": BERT, "roberta": BERT, "distilbert": DISTILBERT, "t5": T5, "bart": BART,
}
# T5 names BERT-style attention parts q/k/v/o; BERT's query/key/value and T5's wi/wi_0/wi_1/wo get llmkit's words.
PART_WORDS = {"query": "q", "key": "k", "value": "v", "wi": "up", "wi_0": "gate", "wi_1": "up", "wo": "down"}


def _conv1d(t: torch.Tensor) -> torch.Tensor:
    """GPT-2 Conv1D W [in, out] -> nn.Linear W [out, in] (y = x W + b either way); biases unchanged."""
    return t.t().contiguous() if t.dim() == 2 else t


def _split(t: torch.Tensor, sizes: list[int], dim: int) -> list[torch.Tensor]:
    return [p.contiguous() for p in t.split(sizes, dim=dim)]


def transform(kind: Transform, name: str, t: torch.Tensor, spec: ModelSpec) -> list[tuple[str, torch.Tensor]]:
    """The llmkit (name, tensor) pairs of one HF tensor (``{part}`` in ``name`` marks a fused tensor)."""
    if kind in ("conv1d", "conv1d_qkv"):
        t = _conv1d(t)
    if kind in ("qkv", "conv1d_qkv"):
        q, kv = spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head
        return [(name.format(part=p), x) for p, x in zip("qkv", _split(t, [q, kv, kv], 0))]
    if kind == "gate_up":
        half = t.shape[0] // 2  # weight [2 d_ff, d] or bias [2 d_ff]
        return [(name.format(part=p), x) for p, x in zip(("gate", "up"), _split(t, [half, half], 0))]
    return [(name, t)]


def _rename(target: str) -> str:
    """Replace HF part words (query, wi_0 ...) by llmkit's (q, gate ...) in a mapped name."""
    parts = target.split(".")
    return ".".join(PART_WORDS.get(p, p) for p in parts)


def _stack_prefix(name: str) -> str:
    """An enc-dec's decoder is the main stack: "decoder.blocks.0..." -> "blocks.0..."."""
    return name.removeprefix("decoder.")


def convert_name(hf_name: str, rows: tuple[Row, ...]) -> tuple[str | None, Transform] | None:
    """(llmkit name or None to drop, transform) of ``hf_name`` under a table; None when no row matches."""
    for pattern, target, kind in rows:
        m = re.fullmatch(pattern, hf_name)
        if m:
            return (None, kind) if target is None else (_stack_prefix(_rename(m.expand(target))), kind)
    return None


def hf_to_llmkit(hf_state: Mapping[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """A HF state dict (any supported family) -> llmkit names; tied LM heads and duplicated tables dropped."""
    rows = NAME_MAPS.get(spec.hf_model_type)
    if rows is None:
        raise LlmkitError(
            f"no tensor-name map for model_type {spec.hf_model_type!r} (known: {', '.join(sorted(NAME_MAPS))})"
        )
    out: dict[str, torch.Tensor] = {}
    for hf_name, tensor in hf_state.items():
        hit = convert_name(hf_name, rows)
        if hit is None:
            if _is_task_head(hf_name):
                continue
            raise LlmkitError(f"unknown tensor {hf_name!r} in a {spec.hf_model_type} checkpoint")
        name, kind = hit
        if name is None or (name == "lm_head.weight" and spec.tied_embeddings):
            continue
        if name == "logits_bias":
            if torch.any(tensor != 0):
                raise LlmkitError("BART's final_logits_bias is not zero: such checkpoints are not supported")
            continue
        out.update(transform(kind, name, tensor, spec))
    if spec.family != "encoder" and not spec.tied_embeddings and "lm_head.weight" not in out and "embed.weight" in out:
        out["lm_head.weight"] = out["embed.weight"]  # saved with the head tied (transformers 5 T5): same values
    return out


TASK_HEADS = re.compile(r"(cls|classifier|qa_outputs|vocab_\w+|lm_head\.(dense|layer_norm|decoder|bias)|score)\..*|lm_head\.bias")


def _is_task_head(hf_name: str) -> bool:
    """Heads of *ForMaskedLM / *ForSequenceClassification checkpoints, which the base model leaves out."""
    return bool(TASK_HEADS.fullmatch(hf_name))


# Kept for the GGUF path and older callers: the llama table is one entry of NAME_MAPS.
def llama_state_dict(hf_state: Mapping[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """HF LlamaForCausalLM-style state dict -> llmkit names (tied LM head dropped)."""
    return hf_to_llmkit(hf_state, spec)


def safetensors_files(directory: Path) -> list[Path]:
    """The checkpoint's shard files: those a ``model.safetensors.index.json`` names, else every *.safetensors."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = sorted({directory / f for f in weight_map.values()})
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise LlmkitError(f"{directory}: shard(s) named in the index are missing: {', '.join(missing)}")
        return files
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise LlmkitError(f"{directory}: no *.safetensors file next to config.json")
    return files


def read_hf_checkpoint(directory: str | Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """(ModelSpec, llmkit state dict) from a HF directory holding config.json and *.safetensors (sharded too)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    spec = from_hf_config(directory)
    hf_state: dict[str, torch.Tensor] = {}
    for f in safetensors_files(directory):
        hf_state.update(load_file(f))
    return spec, hf_to_llmkit(hf_state, spec)


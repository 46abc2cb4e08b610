"""Parameters: the tensor inventory of a ModelSpec and the counts built on it (sheet section 2).

One inventory, many consumers: :func:`tensors` lists every parameter of the
model under the name and shape transformers gives it, tagged with what it is
(component, role, stack, block). Parameter counts, LoRA targets, GGUF
per-tensor quant mixes and weight bytes are all sums over this list.

Counting convention (the truth is the transformers module built on the meta
device): encoders as their base model class (``BertModel``, pooler included
where the class has one), decoders as ``*ForCausalLM`` (LM head counted once
when tied), encoder-decoders as ``*ForConditionalGeneration``. Buffers
(rotary ``inv_freq``, BART's ``final_logits_bias``) are not parameters.

    per block ~ 4·d² (attention) + 8·d² (MLP, d_ff = 4d)  = 12·d²     (sheet section 2)

Pure Python: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable, Literal

from llmkit.spec import ModelSpec, SpecError

Component = Literal["embeddings", "positions", "attention", "ffn", "experts", "router", "norms", "lm_head", "pooler"]
COMPONENTS: tuple[Component, ...] = Component.__args__  # type: ignore[attr-defined]
Stack = Literal["encoder", "decoder", ""]

# Projection roles ("pos_q"/"pos_k": DeBERTa's position projections when keys are not shared).
LINEAR_ROLES = ("q", "k", "v", "o", "qkv", "gate", "up", "down", "gate_up", "pos_q", "pos_k")
# Other roles: "embed", "pos", "type", "norm", "rel_bias", "router", "pooler", "head".


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor, named and shaped as transformers stores it.

    Linear weights are ``(out, in)`` except GPT-2's ``Conv1D`` (``transposed``: ``(in, out)``).
    Mixtral's experts are stacked 3-D tensors ``(n_experts, out, in)`` (transformers 5).
    """

    name: str  # e.g. "model.layers.0.self_attn.q_proj.weight"
    shape: tuple[int, ...]
    component: Component
    role: str  # a LINEAR_ROLES entry for projections, else embed/pos/type/norm/rel_bias/router/pooler/head
    stack: Stack  # its stack; "" for token embeddings, the LM head and BERT's pooler
    layer: int | None  # block index in its stack; None outside blocks (a stack's final norm: stack set, layer None)
    cross: bool = False  # part of the cross-attention of an encoder-decoder
    transposed: bool = False  # stored (in, out): GPT-2's Conv1D

    @property
    def numel(self) -> int:
        """Number of scalars: the product of the shape."""
        return prod(self.shape)

    @property
    def is_linear_weight(self) -> bool:
        """A 2-D weight of an ``nn.Linear`` (or GPT-2 ``Conv1D``): projections, pooler, an untied LM head.

        These are the modules peft and the quantizers replace; filter on ``role`` for a preset (peft's
        "all-linear" skips the LM head). Not included: MoE routers (a bare parameter in transformers 5,
        kept in F32 by GGUF) and the stacked 3-D experts (select them with ``component == "experts"``).
        """
        return (
            len(self.shape) == 2
            and self.name.endswith("weight")
            and self.role in LINEAR_ROLES + ("pooler", "head")
        )

    @property
    def in_out(self) -> tuple[int, int]:
        """(in_features, out_features) of a linear weight (last two dims; experts per expert)."""
        a, b = self.shape[-2:]
        return (a, b) if self.transposed else (b, a)


# -- building blocks: where a group of tensors sits ---------------------------------------


@dataclass(frozen=True)
class _At:
    """A name prefix and the (stack, layer, cross) tags shared by the tensors under it."""

    prefix: str
    stack: Stack = ""
    layer: int | None = None
    cross: bool = False

    def tensor(self, name: str, shape: tuple[int, ...], component: Component, role: str) -> Tensor:
        return Tensor(self.prefix + name, shape, component, role, self.stack, self.layer, self.cross)

    def linear(
        self, name: str, d_in: int, d_out: int, bias: bool, component: Component, role: str, conv1d: bool = False
    ) -> list[Tensor]:
        """Weight (out, in) — (in, out) for Conv1D — plus an optional bias (out,)."""
        shape = (d_in, d_out) if conv1d else (d_out, d_in)
        w = Tensor(self.prefix + name + ".weight", shape, component, role, self.stack, self.layer, self.cross, conv1d)
        return [w] + ([self.tensor(name + ".bias", (d_out,), component, role)] if bias else [])

    def norm(self, name: str, spec: ModelSpec, bias: bool | None = None) -> list[Tensor]:
        """A LayerNorm/RMSNorm: weight (d,) plus bias (d,) when the spec's norms have one."""
        d = spec.d_model
        has_bias = spec.norm_bias if bias is None else bias
        out = [self.tensor(name + ".weight", (d,), "norms", "norm")]
        return out + ([self.tensor(name + ".bias", (d,), "norms", "norm")] if has_bias else [])

    def at(self, sub: str) -> _At:
        """The same tags one name level down."""
        return _At(self.prefix + sub, self.stack, self.layer, self.cross)


def _attention(spec: ModelSpec, at: _At, names: tuple[str, str, str, str]) -> list[Tensor]:
    """Separate q, k, v, o projections: q (H·d_k, d), k and v (H_kv·d_k, d), o (d, H·d_k)."""
    d, q_dim, kv_dim = spec.d_model, spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head
    q, k, v, o = names
    return (
        at.linear(q, d, q_dim, spec.qkv_bias, "attention", "q")
        + at.linear(k, d, kv_dim, spec.qkv_bias, "attention", "k")
        + at.linear(v, d, kv_dim, spec.qkv_bias, "attention", "v")
        + at.linear(o, q_dim, d, spec.out_bias, "attention", "o")
    )


def _mlp(spec: ModelSpec, at: _At, up: str, down: str) -> list[Tensor]:
    """Two-matrix MLP: up (d_ff, d), down (d, d_ff)."""
    d, f, b = spec.d_model, spec.d_ff, spec.ffn_bias
    return at.linear(up, d, f, b, "ffn", "up") + at.linear(down, f, d, b, "ffn", "down")


def _glu(spec: ModelSpec, at: _At, gate: str, up: str, down: str) -> list[Tensor]:
    """Gated FFN (SwiGLU/GeGLU): gate and up (d_ff, d), down (d, d_ff)."""
    d, f, b = spec.d_model, spec.d_ff, spec.ffn_bias
    return at.linear(gate, d, f, b, "ffn", "gate") + _mlp(spec, at, up, down)


def _token_embedding(spec: ModelSpec, name: str) -> Tensor:
    return Tensor(name, (spec.vocab_size, spec.d_model), "embeddings", "embed", "", None)


def _lm_head(spec: ModelSpec, name: str = "lm_head.weight") -> list[Tensor]:
    """The output projection (V, d): a tensor of its own only when not tied to the embeddings."""
    return [] if spec.tied_embeddings else [Tensor(name, (spec.vocab_size, spec.d_model), "lm_head", "head", "", None)]


# -- one function per transformers layout ---------------------------------------------------


def _bert(spec: ModelSpec) -> list[Tensor]:
    """BertModel / RobertaModel: post-LN encoder, learned positions, token types, tanh pooler."""
    e = _At("embeddings.")
    out = [_token_embedding(spec, "embeddings.word_embeddings.weight")]
    out.append(e.tensor("position_embeddings.weight", (spec.max_positions + spec.position_offset, spec.d_model),
                        "positions", "pos"))
    if spec.type_vocab_size:
        out.append(e.tensor("token_type_embeddings.weight", (spec.type_vocab_size, spec.d_model), "embeddings", "type"))
    out += e.norm("LayerNorm", spec)
    for i in range(spec.n_layers):
        at = _At(f"encoder.layer.{i}.", "encoder", i)
        out += _attention(spec, at, ("attention.self.query", "attention.self.key", "attention.self.value",
                                     "attention.output.dense"))
        out += at.norm("attention.output.LayerNorm", spec)
        out += _mlp(spec, at, "intermediate.dense", "output.dense")
        out += at.norm("output.LayerNorm", spec)
    if spec.pooler:
        out += _At("pooler.").linear("dense", spec.d_model, spec.d_model, True, "pooler", "pooler")
    return out


def _distilbert(spec: ModelSpec) -> list[Tensor]:
    """DistilBertModel: a 6-block BERT without token types or pooler (even sinusoidal positions are a parameter)."""
    e = _At("embeddings.")
    out = [_token_embedding(spec, "embeddings.word_embeddings.weight")]
    out.append(e.tensor("position_embeddings.weight", (spec.max_positions, spec.d_model), "positions", "pos"))
    out += e.norm("LayerNorm", spec)
    for i in range(spec.n_layers):
        at = _At(f"transformer.layer.{i}.", "encoder", i)
        out += _attention(spec, at, ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin"))
        out += at.norm("sa_layer_norm", spec)
        out += _mlp(spec, at, "ffn.lin1", "ffn.lin2")
        out += at.norm("output_layer_norm", spec)
    return out


def _deberta_v2(spec: ModelSpec) -> list[Tensor]:
    """DebertaV2Model: BERT blocks with disentangled attention over shared relative embeddings (He et al. 2021)."""
    da = spec.disentangled
    e = _At("embeddings.")
    out = [_token_embedding(spec, "embeddings.word_embeddings.weight")]
    if da is None or da.position_biased_input:
        out.append(e.tensor("position_embeddings.weight", (spec.max_positions, spec.d_model), "positions", "pos"))
    if spec.type_vocab_size:
        out.append(e.tensor("token_type_embeddings.weight", (spec.type_vocab_size, spec.d_model), "embeddings", "type"))
    out += e.norm("LayerNorm", spec)
    for i in range(spec.n_layers):
        at = _At(f"encoder.layer.{i}.", "encoder", i)
        out += _attention(spec, at, ("attention.self.query_proj", "attention.self.key_proj",
                                     "attention.self.value_proj", "attention.output.dense"))
        if da is not None and spec.position == "relative" and not da.share_att_key:
            all_heads = spec.n_heads * spec.d_head
            if "c2p" in da.pos_att_type:
                out += at.linear("attention.self.pos_key_proj", spec.d_model, all_heads, True, "attention", "pos_k")
            if "p2c" in da.pos_att_type:
                out += at.linear("attention.self.pos_query_proj", spec.d_model, all_heads, True, "attention", "pos_q")
        out += at.norm("attention.output.LayerNorm", spec)
        out += _mlp(spec, at, "intermediate.dense", "output.dense")
        out += at.norm("output.LayerNorm", spec)
    if spec.position == "relative":
        enc = _At("encoder.", "encoder")
        out.append(enc.tensor("rel_embeddings.weight", (2 * spec.relative_buckets, spec.d_model), "positions", "pos"))
        if da is not None and da.norm_rel_ebd:
            out += enc.norm("LayerNorm", spec)
    return out


def _gpt2(spec: ModelSpec) -> list[Tensor]:
    """GPT2LMHeadModel: pre-LN decoder with Conv1D projections (fused qkv) and learned positions."""
    d, f = spec.d_model, spec.d_ff
    out = [_token_embedding(spec, "transformer.wte.weight")]
    out.append(_At("transformer.").tensor("wpe.weight", (spec.max_positions, d), "positions", "pos"))
    for i in range(spec.n_layers):
        at = _At(f"transformer.h.{i}.", "decoder", i)
        out += at.norm("ln_1", spec)
        out += at.linear("attn.c_attn", d, 3 * d, spec.qkv_bias, "attention", "qkv", conv1d=True)
        out += at.linear("attn.c_proj", d, d, spec.out_bias, "attention", "o", conv1d=True)
        out += at.norm("ln_2", spec)
        out += at.linear("mlp.c_fc", d, f, spec.ffn_bias, "ffn", "up", conv1d=True)
        out += at.linear("mlp.c_proj", f, d, spec.ffn_bias, "ffn", "down", conv1d=True)
    out += _At("transformer.", "decoder").norm("ln_f", spec)
    return out + _lm_head(spec)


def _llama(spec: ModelSpec) -> list[Tensor]:
    """LlamaForCausalLM (also Mistral, Qwen2): pre-RMSNorm decoder, q/k/v/o, SwiGLU gate/up/down."""
    out = [_token_embedding(spec, "model.embed_tokens.weight")]
    for i in range(spec.n_layers):
        at = _At(f"model.layers.{i}.", "decoder", i)
        out += _attention(spec, at, ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"))
        out += _moe(spec, at) if spec.is_moe else _glu(spec, at, "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
        out += at.norm("input_layernorm", spec) + at.norm("post_attention_layernorm", spec)
    out += _At("model.", "decoder").norm("norm", spec)
    return out + _lm_head(spec)


def _moe(spec: ModelSpec, at: _At) -> list[Tensor]:
    """Mixtral sparse MoE block: router (E, d) and E SwiGLU experts stacked as (E, 2·d_ff, d) and (E, d, d_ff)."""
    d, f, n = spec.d_model, spec.d_ff, spec.n_experts
    return [
        at.tensor("mlp.gate.weight", (n, d), "router", "router"),
        at.tensor("mlp.experts.gate_up_proj", (n, 2 * f, d), "experts", "gate_up"),
        at.tensor("mlp.experts.down_proj", (n, d, f), "experts", "down"),
    ]


def _phi3(spec: ModelSpec) -> list[Tensor]:
    """Phi3ForCausalLM: the LLaMA block with fused qkv_proj (H·d_k + 2·H_kv·d_k, d) and gate_up_proj (2·d_ff, d)."""
    d, f = spec.d_model, spec.d_ff
    q_dim, kv_dim = spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head
    out = [_token_embedding(spec, "model.embed_tokens.weight")]
    for i in range(spec.n_layers):
        at = _At(f"model.layers.{i}.", "decoder", i)
        out += at.linear("self_attn.qkv_proj", d, q_dim + 2 * kv_dim, spec.qkv_bias, "attention", "qkv")
        out += at.linear("self_attn.o_proj", q_dim, d, spec.out_bias, "attention", "o")
        out += at.linear("mlp.gate_up_proj", d, 2 * f, spec.ffn_bias, "ffn", "gate_up")
        out += at.linear("mlp.down_proj", f, d, spec.ffn_bias, "ffn", "down")
        out += at.norm("input_layernorm", spec) + at.norm("post_attention_layernorm", spec)
    out += _At("model.", "decoder").norm("norm", spec)
    return out + _lm_head(spec)


def _t5(spec: ModelSpec) -> list[Tensor]:
    """T5ForConditionalGeneration: pre-RMSNorm, no biases, relative bias buckets in block 0 of each stack."""
    out = [_token_embedding(spec, "shared.weight")]
    for stack, n in (("encoder", spec.n_encoder_layers), ("decoder", spec.n_layers)):
        for i in range(n):
            out += _t5_block(spec, _At(f"{stack}.block.{i}.", stack, i))
        out += _At(f"{stack}.", stack).norm("final_layer_norm", spec, bias=False)
    return out + _lm_head(spec)


def _t5_block(spec: ModelSpec, at: _At) -> list[Tensor]:
    """One T5 block: layer.0 self-attention, [layer.1 cross-attention,] last layer the FFN (DenseReluDense)."""
    qkvo = ("q", "k", "v", "o")
    attn = at.at("layer.0.SelfAttention.")
    out = _attention(spec, attn, qkvo)
    if at.layer == 0:  # the relative-position bias (buckets, heads) lives in the first block only
        out.append(attn.tensor("relative_attention_bias.weight", (spec.relative_buckets, spec.n_heads),
                               "positions", "rel_bias"))
    out += at.norm("layer.0.layer_norm", spec, bias=False)
    ff = "layer.1."
    if at.stack == "decoder":
        x = _At(at.prefix + "layer.1.", at.stack, at.layer, cross=True)
        out += _attention(spec, x.at("EncDecAttention."), qkvo) + x.norm("layer_norm", spec, bias=False)
        ff = "layer.2."
    dense = at.at(ff + "DenseReluDense.")
    out += _glu(spec, dense, "wi_0", "wi_1", "wo") if spec.ffn_kind != "mlp" else _mlp(spec, dense, "wi", "wo")
    return out + at.norm(ff + "layer_norm", spec, bias=False)


def _bart(spec: ModelSpec) -> list[Tensor]:
    """BartForConditionalGeneration: shared embeddings, learned positions (+2 rows), post-LN blocks with biases."""
    out = [_token_embedding(spec, "model.shared.weight")]
    for stack, n in (("encoder", spec.n_encoder_layers), ("decoder", spec.n_layers)):
        s = _At(f"model.{stack}.", stack)
        out.append(s.tensor("embed_positions.weight", (spec.max_positions + spec.position_offset, spec.d_model),
                            "positions", "pos"))
        out += s.norm("layernorm_embedding", spec)
        for i in range(n):
            out += _bart_block(spec, _At(f"model.{stack}.layers.{i}.", stack, i))
        if spec.final_norm:
            out += s.norm("layer_norm", spec)
    return out + _lm_head(spec)


def _bart_block(spec: ModelSpec, at: _At) -> list[Tensor]:
    """One BART block: self_attn (+ encoder_attn in the decoder) and fc1/fc2, each followed by its LayerNorm."""
    names = ("q_proj", "k_proj", "v_proj", "out_proj")
    out = _attention(spec, at.at("self_attn."), names) + at.norm("self_attn_layer_norm", spec)
    if at.stack == "decoder":
        x = _At(at.prefix, at.stack, at.layer, cross=True)
        out += _attention(spec, x.at("encoder_attn."), names) + x.norm("encoder_attn_layer_norm", spec)
    return out + _mlp(spec, at, "fc1", "fc2") + at.norm("final_layer_norm", spec)


# -- the registry: which layout a spec uses and the transformers class it mirrors -----------------

Layout = Callable[[ModelSpec], list[Tensor]]
LAYOUTS: dict[str, tuple[Layout, str]] = {
    "bert": (_bert, "BertModel"),
    "roberta": (_bert, "RobertaModel"),
    "distilbert": (_distilbert, "DistilBertModel"),
    "deberta-v2": (_deberta_v2, "DebertaV2Model"),
    "gpt2": (_gpt2, "GPT2LMHeadModel"),
    "t5": (_t5, "T5ForConditionalGeneration"),
    "bart": (_bart, "BartForConditionalGeneration"),
    "llama": (_llama, "LlamaForCausalLM"),
    "mistral": (_llama, "MistralForCausalLM"),
    "mixtral": (_llama, "MixtralForCausalLM"),
    "qwen2": (_llama, "Qwen2ForCausalLM"),
    "phi3": (_phi3, "Phi3ForCausalLM"),
}


def layout_name(spec: ModelSpec) -> str:
    """The transformers layout a spec follows: its ``hf_model_type``, else guessed from family and norm."""
    if spec.hf_model_type in LAYOUTS:
        return spec.hf_model_type
    if spec.hf_model_type:
        known = ", ".join(sorted(LAYOUTS))
        raise SpecError(f"model {spec.name!r}: no tensor layout for model type {spec.hf_model_type!r} (known: {known})")
    if spec.family == "encoder":
        return "bert"
    if spec.family == "encoder-decoder":
        return "t5" if spec.norm == "rmsnorm" else "bart"
    if spec.norm == "layernorm":
        return "gpt2"
    return "mixtral" if spec.is_moe else "llama"


def transformers_class(spec: ModelSpec) -> str:
    """Name of the transformers class whose parameters :func:`tensors` lists (the counting convention)."""
    return LAYOUTS[layout_name(spec)][1]


def tensors(spec: ModelSpec) -> list[Tensor]:
    """Every parameter tensor of the model, tied weights once, as transformers names and shapes it."""
    layout, _ = LAYOUTS[layout_name(spec)]
    return layout(spec)


# -- counts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one model (sheet section 2).

    ``non_embedding`` is Kaplan et al. (2020)'s N: the total minus token embeddings, position
    embeddings (learned tables and relative-position tables/biases), token-type embeddings and an
    untied LM head. ``active`` counts what one token uses: for MoE the router and
    ``experts_per_token`` of the ``n_experts`` experts; equal to ``total`` for dense models.
    """

    total: int
    non_embedding: int
    active: int
    by_component: dict[str, int]
    approx_12Ld2: int  # 12·L·d², L = all blocks (sheet section 2)
    approx_Vd_12Ld2: int  # V·d + 12·L·d² (sheet section 2)
    convention: str

    @property
    def approx_12Ld2_error(self) -> float:
        """Relative error of 12·L·d² against the exact total."""
        return self.approx_12Ld2 / self.total - 1

    @property
    def approx_Vd_12Ld2_error(self) -> float:
        """Relative error of V·d + 12·L·d² against the exact total."""
        return self.approx_Vd_12Ld2 / self.total - 1


def by_component(inventory: list[Tensor]) -> dict[str, int]:
    """Parameters per component, in COMPONENTS order, components with none left out."""
    sums = {c: 0 for c in COMPONENTS}
    for t in inventory:
        sums[t.component] += t.numel
    return {c: n for c, n in sums.items() if n}


def inactive_expert_params(spec: ModelSpec, inventory: list[Tensor]) -> int:
    """Expert parameters a token does not use: (E - k)/E of every expert tensor (0 for dense models)."""
    if not spec.is_moe:
        return 0
    experts = sum(t.numel for t in inventory if t.component == "experts")
    return experts * (spec.n_experts - spec.experts_per_token) // spec.n_experts


def convention(spec: ModelSpec) -> str:
    """The counting convention in words: the transformers class and how the LM head is counted."""
    cls = transformers_class(spec)
    if spec.family == "encoder":
        return f"{cls} (base model{', pooler included' if spec.pooler else ''}; no task head)"
    head = "LM head tied to the embeddings, counted once" if spec.tied_embeddings else "untied LM head counted"
    return f"{cls} ({head})"


def count_params(spec: ModelSpec) -> ParamCount:
    """Exact parameter counts from the tensor inventory, beside the sheet's 12·L·d² approximations."""
    inventory = tensors(spec)
    parts = by_component(inventory)
    total = sum(parts.values())
    embedding = parts.get("embeddings", 0) + parts.get("positions", 0) + parts.get("lm_head", 0)
    layers_d2 = 12 * spec.total_layers * spec.d_model**2
    return ParamCount(
        total=total,
        non_embedding=total - embedding,
        active=total - inactive_expert_params(spec, inventory),
        by_component=parts,
        approx_12Ld2=layers_d2,
        approx_Vd_12Ld2=spec.vocab_size * spec.d_model + layers_d2,
        convention=convention(spec),
    )

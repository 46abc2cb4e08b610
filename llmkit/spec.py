"""ModelSpec: the one description of an architecture.

Everything in llmkit takes a ModelSpec: the calculator sizes it, the engine
builds it. It is built from a HF ``config.json`` (:func:`from_hf_config`),
from GGUF metadata (:func:`from_gguf_metadata`) or from the zoo
(``llmkit.zoo.get``). Nothing else re-parses configs.

Pure Python: importing this module must never import torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from llmkit.errors import LlmkitError

Family = Literal["encoder", "decoder", "encoder-decoder"]
FFNKind = Literal["mlp", "swiglu", "geglu"]
Activation = Literal["gelu", "gelu_tanh", "relu", "silu"]
PositionKind = Literal["learned", "sinusoidal", "rope", "alibi", "t5", "relative", "none"]
RopeScalingKind = Literal["linear", "dynamic", "yarn", "llama3", "longrope"]
NormKind = Literal["layernorm", "rmsnorm"]
NormPlacement = Literal["pre", "post"]


class SpecError(LlmkitError, ValueError):
    """An impossible or incomplete architecture description."""


@dataclass(frozen=True)
class RopeScaling:
    """RoPE context-extension settings (transformers' ``rope_scaling`` / ``rope_parameters``)."""

    kind: RopeScalingKind
    factor: float = 1.0
    original_max_positions: int | None = None
    low_freq_factor: float | None = None  # llama3
    high_freq_factor: float | None = None  # llama3
    beta_fast: float | None = None  # yarn
    beta_slow: float | None = None  # yarn
    attention_factor: float | None = None  # yarn / longrope
    short_factor: tuple[float, ...] | None = None  # longrope (Phi-3 128k)
    long_factor: tuple[float, ...] | None = None  # longrope


@dataclass(frozen=True)
class DisentangledAttention:
    """DeBERTa's disentangled attention (He et al. 2021; transformers ``DebertaV2Config``).

    Content and relative position are attended separately ("c2p": content-to-position,
    "p2c": position-to-content) over one shared table of ``2 · relative_buckets`` relative
    position embeddings.
    """

    pos_att_type: tuple[str, ...] = ("p2c", "c2p")
    share_att_key: bool = True  # position keys/queries reuse the content key/query projections
    norm_rel_ebd: bool = True  # a LayerNorm on the relative embeddings ("layer_norm")
    position_biased_input: bool = False  # absolute position embeddings added to the input as well


@dataclass(frozen=True)
class ModelSpec:
    """Every architecture fact the sheet and the engine need.

    Layer counts: ``n_layers`` is the decoder stack for decoders and
    encoder-decoders and the encoder stack for encoders; ``n_encoder_layers``
    is the encoder stack of an encoder-decoder (0 otherwise).

    Heads::

        n_heads query heads, n_kv_heads key/value heads, group = n_heads // n_kv_heads
        MHA: n_kv_heads == n_heads    GQA: 1 < n_kv_heads < n_heads    MQA: n_kv_heads == 1
    """

    name: str
    family: Family
    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int
    d_ff: int
    n_encoder_layers: int = 0
    n_kv_heads: int | None = None  # None: same as n_heads (MHA)
    head_dim: int | None = None  # None: d_model // n_heads
    ffn_kind: FFNKind = "mlp"
    activation: Activation = "gelu"
    # Mixture of experts (Mixtral): n_experts FFNs per layer, experts_per_token routed per token.
    n_experts: int = 0
    experts_per_token: int = 0
    # Positions.
    max_positions: int = 2048
    position: PositionKind = "learned"
    position_offset: int = 0  # extra rows in a learned table (RoBERTa padding_idx+1, BART's 2)
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    rotary_fraction: float = 1.0  # share of head_dim that is rotated
    relative_buckets: int = 32  # T5 buckets / DeBERTa position buckets
    relative_max_distance: int = 128
    # Norms.
    norm: NormKind = "layernorm"
    norm_placement: NormPlacement = "pre"
    norm_eps: float = 1e-5
    embedding_norm: bool = False  # LayerNorm right after the embeddings (BERT, BART)
    final_norm: bool = True  # a norm after the last block (pre-LN stacks)
    # Biases.
    qkv_bias: bool = False
    out_bias: bool = False
    ffn_bias: bool = False
    norm_bias: bool = False
    # Embeddings and head.
    tied_embeddings: bool = True
    embedding_scale: float = 1.0  # multiplier on token embeddings (BART scale_embedding: sqrt(d))
    type_vocab_size: int = 0  # BERT token types (segments)
    pooler: bool = False  # BERT-style tanh pooler on the first token
    decoder_start_id: int | None = None  # encoder-decoders: the token the decoder starts from (config.json)
    # Attention.
    sliding_window: int | None = None
    disentangled: DisentangledAttention | None = None  # DeBERTa-v2/v3
    # Free-form provenance: the source of the values (URL, paper).
    source: str = ""
    hf_model_type: str = ""  # the config.json model_type it came from, if any
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived -------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        """Key/value heads (n_heads when not set)."""
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def d_head(self) -> int:
        """Per-head dimension d_k (d_model / n_heads unless given)."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def attention_kind(self) -> Literal["MHA", "GQA", "MQA"]:
        """MHA, GQA or MQA, from the KV-head count (sheet section 10)."""
        if self.kv_heads == self.n_heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    @property
    def total_layers(self) -> int:
        """All transformer blocks: encoder plus decoder."""
        return self.n_layers + self.n_encoder_layers

    def with_(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


_POSITIVE = ("d_model", "n_layers", "n_heads", "vocab_size", "d_ff", "max_positions")
_CHOICES = {
    "family": Family,
    "ffn_kind": FFNKind,
    "activation": Activation,
    "position": PositionKind,
    "norm": NormKind,
    "norm_placement": NormPlacement,
}


def _validate(s: ModelSpec) -> None:
    where = f"model {s.name!r}: " if s.name else ""
    for name, kind in _CHOICES.items():
        allowed = kind.__args__  # type: ignore[attr-defined]
        if getattr(s, name) not in allowed:
            raise SpecError(f"{where}{name} must be one of {', '.join(allowed)}; got {getattr(s, name)!r}")
    for name in _POSITIVE:
        value = getattr(s, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise SpecError(f"{where}{name} must be a positive integer; got {value!r}")
    for name in ("n_encoder_layers", "n_experts", "experts_per_token", "type_vocab_size", "position_offset"):
        value = getattr(s, name)
        if not isinstance(value, int) or value < 0:
            raise SpecError(f"{where}{name} must be a non-negative integer; got {value!r}")
    if s.family == "encoder-decoder" and s.n_encoder_layers == 0:
        raise SpecError(f"{where}n_encoder_layers must be positive for an encoder-decoder")
    if s.family != "encoder-decoder" and s.n_encoder_layers:
        raise SpecError(f"{where}n_encoder_layers is only for encoder-decoders (family is {s.family})")
    if s.head_dim is None and s.d_model % s.n_heads:
        raise SpecError(
            f"{where}n_heads={s.n_heads} does not divide d_model={s.d_model}; give head_dim explicitly"
        )
    if s.head_dim is not None and (not isinstance(s.head_dim, int) or s.head_dim <= 0):
        raise SpecError(f"{where}head_dim must be a positive integer; got {s.head_dim!r}")
    if s.n_kv_heads is not None:
        if not isinstance(s.n_kv_heads, int) or s.n_kv_heads <= 0:
            raise SpecError(f"{where}n_kv_heads must be a positive integer; got {s.n_kv_heads!r}")
        if s.n_heads % s.n_kv_heads:
            raise SpecError(
                f"{where}n_kv_heads={s.n_kv_heads} does not divide n_heads={s.n_heads} (GQA groups must be equal)"
            )
    if s.n_experts and not 1 <= s.experts_per_token <= s.n_experts:
        raise SpecError(
            f"{where}experts_per_token must be between 1 and n_experts={s.n_experts}; got {s.experts_per_token}"
        )
    if s.experts_per_token and not s.n_experts:
        raise SpecError(f"{where}experts_per_token={s.experts_per_token} given without n_experts")
    if s.sliding_window is not None and (not isinstance(s.sliding_window, int) or s.sliding_window <= 0):
        raise SpecError(f"{where}sliding_window must be a positive integer or None; got {s.sliding_window!r}")
    if s.position == "rope" and s.rope_theta <= 0:
        raise SpecError(f"{where}rope_theta must be positive; got {s.rope_theta}")
    if s.rope_scaling is not None:
        kinds = RopeScalingKind.__args__  # type: ignore[attr-defined]
        if s.rope_scaling.kind not in kinds:
            raise SpecError(f"{where}rope_scaling.kind must be one of {', '.join(kinds)}; got {s.rope_scaling.kind!r}")
        if s.rope_scaling.factor <= 0:
            raise SpecError(f"{where}rope_scaling.factor must be positive; got {s.rope_scaling.factor}")
    if not 0 < s.rotary_fraction <= 1:
        raise SpecError(f"{where}rotary_fraction must be in (0, 1]; got {s.rotary_fraction}")
    if s.norm_eps <= 0:
        raise SpecError(f"{where}norm_eps must be positive; got {s.norm_eps}")


SPEC_FIELDS = tuple(f.name for f in fields(ModelSpec))


def load_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object from ``path`` with errors that name the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{p}: expected a JSON object, got {type(data).__name__}")
    return data


# -- from a HF config.json -----------------------------------------------------------------


def _getter(cfg: Mapping[str, Any], where: str):
    def req(*keys: str) -> Any:
        for k in keys:
            if cfg.get(k) is not None:
                return cfg[k]
        names = " or ".join(repr(k) for k in keys)
        raise SpecError(f"{where}: missing required field {names}")

    return req


def _activation(name: str, where: str) -> Activation:
    table = {
        "gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
        "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu",
    }
    if name not in table:
        raise SpecError(f"{where}: unsupported activation {name!r} (known: {', '.join(sorted(table))})")
    return table[name]  # type: ignore[return-value]


def _rope(cfg: Mapping[str, Any], where: str) -> tuple[float, RopeScaling | None]:
    """(theta, scaling) from ``rope_theta`` + ``rope_scaling`` (transformers 4) or ``rope_parameters`` (5)."""
    params = dict(cfg.get("rope_parameters") or {})
    scaling = dict(cfg.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", cfg.get("rope_theta", scaling.get("rope_theta", 10000.0))))
    merged = {**scaling, **params}
    kind = merged.get("rope_type", merged.get("type", "default"))
    kind = {"su": "longrope"}.get(kind, kind)  # Phi-3's early name for LongRoPE
    if kind in (None, "default"):
        return theta, None
    if kind not in RopeScalingKind.__args__:  # type: ignore[attr-defined]
        raise SpecError(f"{where}: unsupported rope scaling {kind!r}")
    tup = lambda v: tuple(float(x) for x in v) if v is not None else None  # noqa: E731
    original = merged.get("original_max_position_embeddings", cfg.get("original_max_position_embeddings"))
    return theta, RopeScaling(
        kind=kind,
        factor=float(merged.get("factor", 1.0)),
        original_max_positions=original,
        low_freq_factor=merged.get("low_freq_factor"),
        high_freq_factor=merged.get("high_freq_factor"),
        beta_fast=merged.get("beta_fast"),
        beta_slow=merged.get("beta_slow"),
        attention_factor=merged.get("attention_factor"),
        short_factor=tup(merged.get("short_factor")),
        long_factor=tup(merged.get("long_factor")),
    )


def _bert_like(cfg: Mapping[str, Any], where: str, name: str) -> ModelSpec:
    req = _getter(cfg, where)
    mt = cfg.get("model_type", "bert")
    offset = 2 if mt == "roberta" else 0  # RoBERTa counts positions from padding_idx + 1
    pet = cfg.get("position_embedding_type", "absolute")
    if pet != "absolute":
        raise SpecError(f"{where}: position_embedding_type {pet!r} is not supported (only 'absolute')")
    return ModelSpec(
        name=name, family="encoder", hf_model_type=mt,
        d_model=req("hidden_size"), n_layers=req("num_hidden_layers"), n_heads=req("num_attention_heads"),
        d_ff=req("intermediate_size"), vocab_size=req("vocab_size"),
        max_positions=req("max_position_embeddings") - offset, position_offset=offset, position="learned",
        activation=_activation(cfg.get("hidden_act", "gelu"), where), ffn_kind="mlp",
        norm="layernorm", norm_placement="post", norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        embedding_norm=True, final_norm=False,
        qkv_bias=True, out_bias=True, ffn_bias=True, norm_bias=True,
        type_vocab_size=cfg.get("type_vocab_size", 2), pooler=True, tied_embeddings=True,
    )


def _distilbert(cfg: Mapping[str, Any], where: str, name: str) -> ModelSpec:
    req = _getter(cfg, where)
    return ModelSpec(
        name=name, family="encoder", hf_model_type="distilbert",
        d_model=req("dim"), n_layers=req("n_layers"), n_heads=req("n_heads"), d_ff=req("hidden_dim"),
        vocab_size=req("vocab_size"), max_positions=req("max_position_embeddings"),
        position="sinusoidal" if cfg.get("sinusoidal_pos_embds") else "learned",
        activation=_activation(cfg.get("activation", "gelu"), where),
        norm="layernorm", norm_placement="post", norm_eps=1e-12, embedding_norm=True, final_norm=False,
        qkv_bias=True, out_bias=True, ffn_bias=True, norm_bias=True, tied_embeddings=True,
    )


def _deberta_v2(cfg: Mapping[str, Any], where: str, name: str) -> ModelSpec:
    req = _getter(cfg, where)
    d = req("hidden_size")
    if cfg.get("embedding_size") not in (None, d) or cfg.get("conv_kernel_size", 0):
        raise SpecError(f"{where}: DeBERTa with embedding_size != hidden_size or a conv layer is not supported")
    buckets = cfg.get("position_buckets", -1)
    max_rel = cfg.get("max_relative_positions", -1)
    if max_rel < 1:
        max_rel = req("max_position_embeddings")
    att = cfg.get("pos_att_type") or ()
    if isinstance(att, str):  # published as "p2c|c2p"
        att = [x.strip() for x in att.lower().split("|") if x.strip()]
    return ModelSpec(
        name=name, family="encoder", hf_model_type="deberta-v2",
        d_model=d, n_layers=req("num_hidden_layers"), n_heads=req("num_attention_heads"),
        d_ff=req("intermediate_size"), vocab_size=req("vocab_size"),
        max_positions=req("max_position_embeddings"),
        position="relative" if cfg.get("relative_attention") else "learned",
        relative_buckets=buckets if buckets > 0 else max_rel, relative_max_distance=max_rel,
        activation=_activation(cfg.get("hidden_act", "gelu"), where),
        norm="layernorm", norm_placement="post", norm_eps=float(cfg.get("layer_norm_eps", 1e-7)),
        embedding_norm=True, final_norm=False,
        qkv_bias=True, out_bias=True, ffn_bias=True, norm_bias=True,
        type_vocab_size=cfg.get("type_vocab_size", 0), tied_embeddings=True,
        disentangled=DisentangledAttention(
            pos_att_type=tuple(att),
            share_att_key=bool(cfg.get("share_att_key", False)),
            norm_rel_ebd="layer_norm" in str(cfg.get("norm_rel_ebd", "none")).lower(),
            position_biased_input=bool(cfg.get("position_biased_input", True)),
        ),
    )


def _gpt2(cfg: Mapping[str, Any], where: str, name: str) -> ModelSpec:
    req = _getter(cfg, where)
    d = req("n_embd", "hidden_size")
    return ModelSpec(
        name=name, family="decoder", hf_model_type="gpt2",
        d_model=d, n_layers=req("n_layer", "num_hidden_layers"), n_heads=req("n_head", "num_attention_heads"),
        d_ff=cfg.get("n_inner") or 4 * d, vocab_size=req("vocab_size"),
        max_positions=req("n_positions", "n_ctx", "max_position_embeddings"), position="learned",
        activation=_activation(cfg.get("activation_function", "gelu_new"), where),
        norm="layernorm", norm_placement="pre", norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        qkv_bias=True, out_bias=True, ffn_bias=True, norm_bias=True,
        tied_embeddings=cfg.get("tie_word_embeddings", True),
    )


def _t5(cfg: Mapping[str, Any], where: str, name: str) -> ModelSpec:
    req = _getter(cfg, where)
    proj = cfg.get("feed_forward_proj", "relu")
    gated = proj.startswith("gated-")
    # transformers runs "gated-gelu" (T5 v1.1, FLAN-T5) with the tanh approximation (gelu_new).
    act = "gelu_tanh" if proj == "gated-gelu" else _activation(proj.removeprefix("gated-"), where)
    if gated and act not in ("gelu", "gelu_tanh"):
        raise SpecError(f"{where}: feed_forward_proj {proj!r} is not supported")
    n_layers = req("num_layers")
    return ModelSpec(
        name=name, family="encoder-decoder", hf_model_type="t5",
        d_model=req("d_model"), n_layers=cfg.get("num_decoder_layers") or n_layers, n_encoder_layers=n_layers,
        n_heads=req("num_heads"), head_dim=req("d_kv"), d_ff=req("d_ff"), vocab_size=req("vocab_size"),
        max_positions=cfg.get("n_positions", 512), position="t5",
        relative_buckets=cfg.get("relative_attention_num_buckets", 32),
        relative_max_distance=cfg.get("relative_attention_max_distance", 128),
        ffn_kind="geglu" if gated else "mlp", activation=act,
        norm="rmsnorm", norm_placement="pre", norm_eps=float(cfg.get("layer_norm_epsilon", 1e-6)),
        # transformers 5 saves T5 v1.1 / FLAN-T5 as tie_word_embeddings=true + scale_decoder_outputs=false;
        # the untied head (and no d_model**-0.5 rescale) is what scale_decoder_outputs=false means.
        tied_embeddings=bool(cfg.get("scale_decoder_outputs", cfg.get("tie_word_embeddings", True))),
        decoder_start_id=cfg.get("decoder_start_token_id", cfg.get("pad_token_id", 0)),
    )


def _bart(cfg: Mapping[str, Any], where: str, name: str) -> ModelSpec:
    req = _getter(cfg, where)
    if req("encoder_attention_heads") != req("decoder_attention_heads") or req("encoder_ffn_dim") != req(
        "decoder_ffn_dim"
    ):
        raise SpecError(f"{where}: encoder and decoder of different widths are not supported")
    d = req("d_model")
    # transformers' BART is post-LN with no final norm whatever normalize_before / add_final_layer_norm say
    # (those keys are mBART's); the spec follows the model that actually runs.
    return ModelSpec(
        name=name, family="encoder-decoder", hf_model_type="bart",
        d_model=d, n_layers=req("decoder_layers"), n_encoder_layers=req("encoder_layers"),
        n_heads=req("encoder_attention_heads"), d_ff=req("encoder_ffn_dim"), vocab_size=req("vocab_size"),
        max_positions=req("max_position_embeddings"), position="learned", position_offset=2,
        activation=_activation(cfg.get("activation_function", "gelu"), where),
        norm="layernorm", norm_placement="post", norm_eps=1e-5, embedding_norm=True, final_norm=False,
        qkv_bias=True, out_bias=True, ffn_bias=True, norm_bias=True,
        embedding_scale=d**0.5 if cfg.get("scale_embedding") else 1.0,
        tied_embeddings=cfg.get("tie_word_embeddings", True),
        decoder_start_id=cfg.get("decoder_start_token_id", cfg.get("eos_token_id", 2)),
    )


def _llama_like(cfg: Mapping[str, Any], where: str, name: str) -> ModelSpec:
    req = _getter(cfg, where)
    mt = cfg.get("model_type", "llama")
    theta, scaling = _rope(cfg, where)
    window = cfg.get("sliding_window")
    if mt == "qwen2" and not cfg.get("use_sliding_window", False):
        window = None
    d, heads, head_dim = req("hidden_size"), req("num_attention_heads"), cfg.get("head_dim")
    if head_dim is not None and head_dim * heads == d:
        head_dim = None  # transformers 5 writes the derived d_model / n_heads back; keep the spec canonical
    moe = mt == "mixtral"  # MixtralConfig defaults: 8 experts, top-2
    n_experts = cfg.get("num_local_experts", 8 if moe else 0) or 0
    return ModelSpec(
        name=name, family="decoder", hf_model_type=mt,
        d_model=d, n_layers=req("num_hidden_layers"), n_heads=heads,
        n_kv_heads=cfg.get("num_key_value_heads") or heads, head_dim=head_dim,
        d_ff=req("intermediate_size"), vocab_size=req("vocab_size"),
        ffn_kind="swiglu", activation=_activation(cfg.get("hidden_act", "silu"), where),
        n_experts=n_experts, experts_per_token=cfg.get("num_experts_per_tok", 2) if n_experts else 0,
        max_positions=req("max_position_embeddings"), position="rope", rope_theta=theta, rope_scaling=scaling,
        rotary_fraction=float(cfg.get("partial_rotary_factor", 1.0)),
        norm="rmsnorm", norm_placement="pre", norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        qkv_bias=mt == "qwen2" or bool(cfg.get("attention_bias", False)),
        out_bias=bool(cfg.get("attention_bias", False)), ffn_bias=bool(cfg.get("mlp_bias", False)),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)), sliding_window=window,
    )


HF_PARSERS = {
    "bert": _bert_like, "roberta": _bert_like, "distilbert": _distilbert, "deberta-v2": _deberta_v2,
    "gpt2": _gpt2, "t5": _t5, "bart": _bart,
    "llama": _llama_like, "mistral": _llama_like, "mixtral": _llama_like, "phi3": _llama_like,
    "qwen2": _llama_like,
}


def from_hf_config(config: Mapping[str, Any] | str | Path, name: str = "") -> ModelSpec:
    """ModelSpec from a HF ``config.json`` (a path, a directory holding one, or the parsed dict)."""
    where = "config.json"
    if not isinstance(config, Mapping):
        path = Path(config)
        if path.is_dir():
            path = path / "config.json"
        where = str(path)
        config = load_json(path)
        name = name or path.parent.name
    model_type = config.get("model_type")
    if model_type is None:
        raise SpecError(f"{where}: missing required field 'model_type'")
    parser = HF_PARSERS.get(model_type)
    if parser is None:
        raise SpecError(
            f"{where}: model_type {model_type!r} is not supported (supported: {', '.join(sorted(HF_PARSERS))})"
        )
    try:
        return parser(config, where, name or model_type)
    except SpecError:
        raise
    except (TypeError, ValueError) as e:
        raise SpecError(f"{where}: malformed value ({e})") from None


# -- from GGUF metadata ------------------------------------------------------------------

GGUF_ARCHITECTURES = ("llama", "qwen2", "phi3")


def from_gguf_metadata(
    metadata: Mapping[str, Any], tensor_names: frozenset[str] | set[str] | None = None, name: str = ""
) -> ModelSpec:
    """ModelSpec from GGUF key/value metadata (llama-family keys: ``{arch}.embedding_length`` ...).

    ``tensor_names`` decides tied embeddings: a GGUF without ``output.weight`` ties the LM head.
    """
    arch = metadata.get("general.architecture")
    if arch is None:
        raise SpecError("GGUF metadata: missing required key 'general.architecture'")
    if arch not in GGUF_ARCHITECTURES:
        raise SpecError(f"GGUF architecture {arch!r} is not supported (supported: {', '.join(GGUF_ARCHITECTURES)})")

    def req(key: str) -> Any:
        full = f"{arch}.{key}"
        if full not in metadata:
            raise SpecError(f"GGUF metadata: missing required key {full!r}")
        return metadata[full]

    n_heads = int(req("attention.head_count"))
    d_model = int(req("embedding_length"))
    vocab = metadata.get(f"{arch}.vocab_size")
    if vocab is None:
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is None:
            raise SpecError(f"GGUF metadata: neither {arch}.vocab_size nor tokenizer.ggml.tokens is present")
        vocab = len(tokens)
    head_dim = metadata.get(f"{arch}.attention.key_length")
    rope_dims = metadata.get(f"{arch}.rope.dimension_count")
    d_head = int(head_dim) if head_dim else d_model // n_heads
    scaling = None
    if metadata.get(f"{arch}.rope.scaling.type") in ("linear", "yarn"):
        scaling = RopeScaling(
            kind=metadata[f"{arch}.rope.scaling.type"],
            factor=float(metadata.get(f"{arch}.rope.scaling.factor", 1.0)),
            original_max_positions=metadata.get(f"{arch}.rope.scaling.original_context_length"),
        )
    n_experts = int(metadata.get(f"{arch}.expert_count", 0) or 0)
    window = metadata.get(f"{arch}.attention.sliding_window")
    tied = tensor_names is not None and "output.weight" not in tensor_names
    model_type = "mixtral" if arch == "llama" and n_experts else arch  # llama.cpp files Mixtral under "llama"
    return ModelSpec(
        name=name or str(metadata.get("general.name", arch)), family="decoder", hf_model_type=model_type,
        d_model=d_model, n_layers=int(req("block_count")), n_heads=n_heads,
        n_kv_heads=int(metadata.get(f"{arch}.attention.head_count_kv", n_heads)),
        head_dim=int(head_dim) if head_dim and int(head_dim) != d_model // n_heads else None,
        d_ff=int(req("feed_forward_length")), vocab_size=int(vocab),
        ffn_kind="swiglu", activation="silu",
        n_experts=n_experts, experts_per_token=int(metadata.get(f"{arch}.expert_used_count", 0)) if n_experts else 0,
        max_positions=int(req("context_length")), position="rope",
        rope_theta=float(metadata.get(f"{arch}.rope.freq_base", 10000.0)), rope_scaling=scaling,
        rotary_fraction=int(rope_dims) / d_head if rope_dims else 1.0,
        norm="rmsnorm", norm_placement="pre",
        norm_eps=float(metadata.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        qkv_bias=arch == "qwen2", tied_embeddings=tied,
        sliding_window=int(window) if window else None,
    )

"""The one model class: ``Transformer(spec)``, every family built from a ModelSpec (litgpt's rule).

    decoder (GPT-2, LLaMA, Mistral, Mixtral, Phi-3, Qwen2)     encoder (BERT, RoBERTa, DistilBERT)
      input_ids [batch, seq]                                     input_ids [batch, seq] (+ token types)
      -> embed (+ learned positions)                             -> embed + positions + types -> embed_norm
      -> n_layers x causal Block (RoPE, window, GQA, MoE)        -> n_layers x bidirectional post-LN Block
      -> norm -> lm_head          logits [batch, seq, vocab]     -> hidden [batch, seq, d_model]; pooled() tanh

    encoder-decoder (T5, BART)
      encoder: a bidirectional Stack over input_ids   -> EncoderOutput (hidden, padding mask, cross K/V cache)
      decoder: this Transformer's own causal Stack over decoder_input_ids, each block also
               cross-attending to the encoder output  -> lm_head   logits [batch, tgt, vocab]

A Stack is what sits between the token embeddings and the head: position table, embedding
norm, T5's relative bias (computed once per stack, shared by its layers), the blocks, the
final norm. The Transformer *is* its main stack (decoder or encoder), plus the token
embeddings, the pooler, the LM head and, for encoder-decoders, a second Stack ``encoder``.

Parameter names (io/ produces exactly these; an enc-dec's encoder stack under ``encoder.``):
``embed.weight``, ``type_embed.weight``, ``pos_embed.weight``, ``embed_norm.*``,
``rel_bias.relative_attention_bias.weight``, ``blocks.{i}.attn_norm.*``, ``blocks.{i}.attn.{q,k,v,o}.*``,
``blocks.{i}.cross_norm.*``, ``blocks.{i}.cross.{q,k,v,o}.*``, ``blocks.{i}.ffn_norm.*``,
``blocks.{i}.ffn.{gate,up,down}.*`` (MoE: ``blocks.{i}.ffn.*`` as nn/ffn.py's MoE names them),
``norm.*``, ``pooler.{weight,bias}``, ``lm_head.weight`` (absent when tied).

Which field does what:
    position        rope | learned | sinusoidal (a table added to the embeddings) | t5 (relative bias, no scaling)
    position_offset rows the learned table keeps in front (RoBERTa 2, BART 2)
    norm_placement  pre | post        embedding_norm, final_norm      norm after embeddings / after the stack
    type_vocab_size BERT segments     pooler          tanh(W h_0 + b) on the first token
    tied_embeddings the head reuses embed.weight (T5 then rescales by d_model^-0.5 first)
    embedding_scale BART's sqrt(d)    sliding_window  Mistral         n_experts       Mixtral MoE FFN
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llmkit import kernels
from llmkit.nn.attention import CrossKVCache, Mask, build_mask
from llmkit.nn.block import Block
from llmkit.nn.fast import decode_batch_step, decode_step
from llmkit.nn.linear import Linear, linear
from llmkit.nn.norm import build_norm
from llmkit.nn.position import (
    T5RelativeBias,
    rope_cos_sin,
    rope_inv_freq,
    sinusoidal_table,
)
from llmkit.spec import ModelSpec, SpecError

SUPPORTED_POSITIONS = ("rope", "learned", "sinusoidal", "t5")


def check_supported(spec: ModelSpec) -> None:
    """Raise SpecError naming the first feature of ``spec`` this model cannot build."""
    if spec.position not in SUPPORTED_POSITIONS:
        raise SpecError(
            f"model {spec.name!r}: position={spec.position!r} is not supported by the model families "
            f"(supported: {', '.join(SUPPORTED_POSITIONS)})"
        )
    if spec.disentangled is not None:
        raise SpecError(f"model {spec.name!r}: DeBERTa's disentangled attention is not supported")
    if spec.family == "encoder" and spec.position == "rope":
        raise SpecError(f"model {spec.name!r}: RoPE encoders are not supported")


@dataclass
class EncoderOutput:
    """What the decoder of an encoder-decoder attends to, kept across decoding steps.

    hidden [batch, src, d_model]; mask: the source padding as a Mask; cache: each decoder layer's
    cross-attention K/V, computed from ``hidden`` on the first step and reused after.
    """

    hidden: torch.Tensor
    mask: Mask
    cache: CrossKVCache


def embedding(n: int, d: int) -> nn.Embedding:
    """nn.Embedding(n, d); on the meta device (a model about to be loaded) without its random init, which
    there runs through PyTorch's Python decompositions (~70 MB of resident memory, for nothing)."""
    if torch.empty(0).is_meta:
        return nn.Embedding(n, d, _weight=torch.empty(n, d))
    return nn.Embedding(n, d)


def default_positions(padding: torch.Tensor | None, past: int, q_len: int) -> torch.Tensor:
    """Positions [batch|1, q_len]: past + 0..q_len-1, or counted over real tokens when padded (as HF generate)."""
    if padding is None:
        return torch.arange(past, past + q_len)[None]  # [1, seq]
    counted = padding.long().cumsum(-1) - 1  # [batch, past + seq]
    return counted[:, past : past + q_len].clamp(min=0)


class Stack(nn.Module):
    """Blocks with what sits at their ends: learned/sinusoidal positions, embedding norm, T5 bias, final norm."""

    def __init__(self, spec: ModelSpec, n_layers: int, causal: bool, cross: bool = False) -> None:
        super().__init__()
        self.spec, self.causal = spec, causal
        self.pos_embed = None
        if spec.position in ("learned", "sinusoidal"):
            self.pos_embed = embedding(spec.max_positions + spec.position_offset, spec.d_model)
            if spec.position == "sinusoidal" and self.pos_embed.weight.device.type != "meta":
                self.pos_embed.weight.data.copy_(sinusoidal_table(*self.pos_embed.weight.shape))
        self.embed_norm = build_norm(spec) if spec.embedding_norm else None
        self.rel_bias = None
        if spec.position == "t5":  # one table per stack, in its first layer (T5): shared by all its layers
            self.rel_bias = T5RelativeBias(spec.relative_buckets, spec.n_heads, spec.relative_max_distance, not causal)
        self.blocks = nn.ModuleList(Block(spec, i, cross) for i in range(n_layers))
        self.norm = build_norm(spec) if spec.final_norm else None

    def run(
        self, x: torch.Tensor, positions: torch.Tensor, mask: Mask, cache=None, memory: EncoderOutput | None = None
    ) -> torch.Tensor:
        """Token embeddings x [batch, seq, d_model] at positions [batch|1, seq] -> the stack's output, same shape."""
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions + self.spec.position_offset)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        rope = self.rope(positions, x.dtype)
        bias = self.position_bias(x.shape[1], cache.length if cache is not None else 0)
        for block in self.blocks:
            x = block(x, rope, mask, cache, bias, memory)
        return self.norm(x) if self.norm is not None else x

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos, sin [batch|1, 1, seq, d_rot] for RoPE stacks (None otherwise)."""
        return None

    def position_bias(self, q_len: int, past: int) -> torch.Tensor | None:
        """T5's additive bias [1, heads, q, past + q] from query positions past.. against keys 0.. (None otherwise)."""
        if self.rel_bias is None:
            return None
        device = self.rel_bias.relative_attention_bias.weight.device
        q_pos = torch.arange(past, past + q_len, device=device)
        return self.rel_bias(q_pos, torch.arange(past + q_len, device=device))


class Transformer(Stack):
    """Any family configured by a ModelSpec: ``forward(ids) -> logits`` (hidden states for encoders)."""

    def __init__(self, spec: ModelSpec) -> None:
        check_supported(spec)
        enc_dec = spec.family == "encoder-decoder"
        super().__init__(spec, spec.n_layers, causal=spec.family != "encoder", cross=enc_dec)
        self.embed = embedding(spec.vocab_size, spec.d_model)
        self.type_embed = embedding(spec.type_vocab_size, spec.d_model) if spec.type_vocab_size else None
        self.encoder = Stack(spec, spec.n_encoder_layers, causal=False) if enc_dec else None
        self.pooler = Linear(spec.d_model, spec.d_model) if spec.pooler else None
        untied = spec.family != "encoder" and not spec.tied_embeddings
        self.lm_head = Linear(spec.d_model, spec.vocab_size, bias=False) if untied else None
        # T5 rescales the decoder output by d_model^-0.5 before a head tied to the embeddings (Mesh TF).
        self.head_scale = spec.d_model**-0.5 if spec.position == "t5" and spec.tied_embeddings else 1.0
        self.init_buffers()

    def init_buffers(self) -> None:
        """(Re)compute the RoPE frequencies, which are derived from the spec, not stored in checkpoints."""
        self.rope_scale = 1.0
        if self.spec.position == "rope":
            with torch.device("cpu"):  # arithmetic on meta would load torch's Python decompositions (~70 MB)
                inv_freq, self.rope_scale = rope_inv_freq(self.spec)
            params = list(self.parameters())  # a packed embedding may have left some on meta: use a loaded one
            device = next((p.device for p in params if not p.is_meta), params[0].device)
            self.register_buffer("inv_freq", inv_freq.to(device), persistent=False)

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.spec.position != "rope":
            return None
        return rope_cos_sin(self.inv_freq, positions, self.rope_scale, dtype)  # 2 x [batch|1, 1, seq, d_rot]

    @property
    def activation_dtype(self) -> torch.dtype:
        """The dtype of the residual stream: that of the norms' weights (float32 unless cast)."""
        return (self.norm if self.norm is not None else self.blocks[0].ffn_norm).weight.dtype

    def embed_tokens(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings x embedding_scale (+ token-type embeddings): [batch, seq, d_model]."""
        x = self.embed(input_ids).to(self.activation_dtype)  # [batch, seq, d_model]
        if self.spec.embedding_scale != 1.0:
            x = x * self.spec.embedding_scale
        if self.type_embed is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.type_embed(types)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits = x W_head^T, W_head = embed.weight when tied (T5 scales x first): [batch, seq, vocab]."""
        if self.head_scale != 1.0:
            x = x * self.head_scale
        if self.lm_head is None:
            return linear(x, self.embed.weight)
        return self.lm_head(x)

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        """BERT's pooler: tanh(W h_[CLS] + b), [batch, d_model] from hidden [batch, seq, d_model]."""
        if self.pooler is None:
            raise SpecError(f"model {self.spec.name!r} has no pooler (spec.pooler is False)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def bind(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> BoundDecoder:
        """The decoder view with this source encoded once (see :class:`BoundDecoder`)."""
        return BoundDecoder(self, self.encode(input_ids, attention_mask))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        """Run an encoder-decoder's encoder once: its output for every decoding step (cross K/V cached lazily)."""
        if self.encoder is None:
            raise SpecError(f"model {self.spec.name!r} is a {self.spec.family}: only encoder-decoders have encode()")
        mask = Mask(padding=attention_mask, dtype=self.activation_dtype)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # [1, src]
        hidden = self.encoder.run(self.embed_tokens(input_ids), positions, mask)  # [batch, src, d_model]
        return EncoderOutput(hidden, mask, CrossKVCache())

    @kernels.pinned
    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        cache=None,
        positions: torch.Tensor | None = None,
        last_only: bool = False,
        *,
        token_type_ids: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        encoder_output: EncoderOutput | None = None,
    ) -> torch.Tensor:
        """Logits [batch, seq, vocab] (seq 1 when ``last_only``); an encoder's hidden states [batch, seq, d_model].

        attention_mask: [batch, past + seq], 1 for real tokens, 0 for padding (for an encoder-decoder: the
        source's); cache: a KV cache, filled with this call's keys/values; positions: [batch|1, seq].
        Encoder-decoders: ``decoder_input_ids`` [batch, tgt] are what the decoder reads; pass
        ``encoder_output`` (from :meth:`encode`) to reuse the encoder and its cross K/V across steps.
        """
        if self.encoder is not None:
            return self.decode(input_ids, attention_mask, decoder_input_ids, encoder_output, cache, last_only)
        t = input_ids.shape[1]  # input_ids: [batch, seq]
        past = cache.length if cache is not None else 0
        if self.spec.family == "encoder":
            mask = Mask(padding=attention_mask, dtype=self.activation_dtype)
            positions = positions if positions is not None else torch.arange(t, device=input_ids.device)[None]
            return self.run(self.embed_tokens(input_ids, token_type_ids), positions, mask)  # [batch, seq, d_model]
        if cache is not None and positions is None:  # the C step if it applies: batch 1, few tokens; or a
            logits = (decode_step(self, input_ids, cache, last_only) if attention_mask is None  # batch, one
                      else decode_batch_step(self, input_ids, attention_mask, cache))  # new token per row
            if logits is not None:
                return logits
        if positions is None:
            positions = default_positions(attention_mask, past, t).to(input_ids.device)
        mask = build_mask(attention_mask, t, past, self.activation_dtype, self.spec.sliding_window)
        x = self.run(self.embed_tokens(input_ids), positions, mask, cache)  # [batch, seq, d_model]
        if cache is not None:
            cache.advance(t)
        if last_only:
            x = x[:, -1:]  # [batch, 1, d_model]
        return self.head(x)  # [batch, seq, vocab]

    def decode(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        decoder_input_ids: torch.Tensor | None,
        encoder_output: EncoderOutput | None,
        cache=None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """An encoder-decoder's logits [batch, tgt, vocab]: encode (unless given), then the causal decoder."""
        if decoder_input_ids is None:
            raise SpecError(f"model {self.spec.name!r} is an encoder-decoder: pass decoder_input_ids=")
        if encoder_output is None:
            if input_ids is None:
                raise SpecError("an encoder-decoder needs input_ids (the source) or encoder_output")
            encoder_output = self.encode(input_ids, attention_mask)
        t = decoder_input_ids.shape[1]
        past = cache.length if cache is not None else 0
        positions = torch.arange(past, past + t, device=decoder_input_ids.device)[None]  # [1, tgt]
        mask = build_mask(None, t, past, self.activation_dtype)
        x = self.run(self.embed_tokens(decoder_input_ids), positions, mask, cache, encoder_output)
        if cache is not None:
            cache.advance(t)
        if last_only:
            x = x[:, -1:]
        return self.head(x)  # [batch, tgt, vocab]


class BoundDecoder(nn.Module):
    """An encoder-decoder's decoder with one encoded source bound in: the decoder-only interface.

        view = model.bind(input_ids, attention_mask)      # runs the encoder once
        view(decoder_ids, cache=..., last_only=True)      # logits, cross K/V computed once and reused

    so encoder-decoders decode through the same generation loop as decoders (generate/loop.py).
    """

    def __init__(self, model: Transformer, encoder_output: EncoderOutput) -> None:
        super().__init__()
        self.model, self.encoder_output, self.spec = model, encoder_output, model.spec

    @property
    def activation_dtype(self) -> torch.dtype:
        return self.model.activation_dtype

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache=None,
        positions: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Decoder logits [batch, tgt, vocab] for decoder ids [batch, tgt] (attention_mask: ignored, no target padding)."""
        return self.model.decode(None, None, input_ids, self.encoder_output, cache, last_only)

"""Running tokens of a LLaMA-family decoder in one C call (``decode_tokens`` / ``decode_batch``, cpu.c).

The module path costs ~40 PyTorch ops and a dozen module calls per layer, each a few microseconds:
for a small model that is most of a token's time. :class:`DecodePlan` gathers, once per KV cache, the
pointers the C step needs (weights in their formats, norms, the cache's per-layer K/V) and
:meth:`Transformer.forward <llmkit.nn.model.Transformer.forward>` hands it batch-1 calls of new tokens
(decoding steps, speculative verifications, prompts of any length, in calls of at most CHUNK_BYTES of
activations) and batched steps of one new token per sequence (left-padded batches, beams:
``decode_batch_step``).

A prompt is compute-bound: there the C step runs blocked float32 products (cpu.c's span_f32, as fast as
PyTorch's MKL GEMM on this machine; bfloat16 and quantized weights converted 48 rows at a time) and a
tiled causal attention, with no PyTorch op or OpenMP barrier between them, and the last layer only for
the rows whose logits are asked for (SmolLM2, 300 tokens: ~0.6 s against ~0.75 s through the modules).

The step is the same composition as Block.forward (pre-norm RMSNorm, RoPE on q and k, GQA attention over
the cache, SwiGLU) on the same kernels the modules use; tests/nn/test_fast.py holds its logits to the
module path's. :func:`plan_for` returns None (and the modules run) for anything else: other families,
norms or FFNs, MoE, biases on o/FFN, a backend or Shaw terms set on an attention layer, forward hooks
(contrastive search's), caches other than contiguous, activations not in float32.
"""

from __future__ import annotations

import ctypes
import weakref

import torch
from torch import nn

from llmkit import kernels
from llmkit.spec import ModelSpec


class Proj(ctypes.Structure):
    _fields_ = [("fmt", ctypes.c_int64), ("n", ctypes.c_int64), ("k", ctypes.c_int64),
                ("w", ctypes.c_void_p), ("bias", ctypes.c_void_p)]


class Layer(ctypes.Structure):
    _fields_ = [("attn_norm", ctypes.c_void_p), ("ffn_norm", ctypes.c_void_p),
                *[(name, Proj) for name in ("q", "k", "v", "o", "gate", "up", "down")],
                ("k_cache", ctypes.c_void_p), ("v_cache", ctypes.c_void_p)]


class Decoder(ctypes.Structure):
    _fields_ = [*[(name, ctypes.c_int64) for name in
                  ("n_layers", "d_model", "n_heads", "n_kv", "d_head", "d_rot", "d_ff", "max_len", "window")],
                ("eps", ctypes.c_float), ("scale", ctypes.c_float), ("rope_scale", ctypes.c_float),
                ("inv_freq", ctypes.c_void_p), ("layers", ctypes.POINTER(Layer)), ("final_norm", ctypes.c_void_p),
                ("embed", Proj), ("head", Proj)]


def proj(module: nn.Module, keep: list) -> Proj | None:
    """The Proj of a kernel-readable linear layer (Linear with float32 weights, or PackedLinear); None otherwise."""
    if hasattr(module, "fmt") and hasattr(module, "data"):  # quant.linear.PackedLinear
        data, fmt, k = module.data, module.fmt, module.in_features
    elif isinstance(module, nn.Linear) and module.weight.dtype == torch.float32:
        data, fmt, k = module.weight, "f32", module.in_features
    else:
        return None
    bias = getattr(module, "bias", None)
    if not data.is_contiguous() or (bias is not None and bias.dtype != torch.float32):
        return None
    keep.extend([data, bias])
    return Proj(kernels.FORMATS.index(fmt), data.shape[0], k, data.data_ptr(), None if bias is None else bias.data_ptr())


def table(model: nn.Module, keep: list) -> Proj | None:
    """The embedding table as a Proj: float32 weights, or the packed head's blocks a PackedEmbedding reads."""
    embed = model.embed
    if hasattr(embed, "head"):  # quant.linear.PackedEmbedding
        return proj(embed.head[0], keep)
    if isinstance(embed, nn.Embedding) and embed.weight.dtype == torch.float32 and embed.weight.is_contiguous():
        keep.append(embed.weight)
        return Proj(0, *embed.weight.shape, embed.weight.data_ptr(), None)
    return None


def qualifies(model: nn.Module) -> bool:
    """The spec-level conditions: a RoPE decoder with pre-norm RMSNorm and a SwiGLU FFN, nothing else."""
    s = model.spec
    return (s.family == "decoder" and s.position == "rope" and s.norm == "rmsnorm" and s.norm_placement == "pre"
            and s.ffn_kind == "swiglu" and not s.is_moe and s.embedding_scale == 1.0
            and not s.out_bias and not s.ffn_bias and s.final_norm and not s.embedding_norm
            and model.head_scale == 1.0 and kernels.enabled())


class DecodePlan:
    """The C step's view of one model and one contiguous KV cache (rebuilt when either changes)."""

    def __init__(self, model: nn.Module, cache, structs: Decoder, layers, keep: list) -> None:
        # No reference to the model (plans live in a WeakKeyDictionary keyed by it, PLANS) nor to the cache: a
        # finished generation's cache is freed at once, not when the next one's plan replaces this one (a
        # second cache's worth of peak memory).
        self.vocab, self.structs, self.layers, self.keep = structs.head.n, structs, layers, keep  # the head's rows
        k_cache, v_cache = cache.contiguous_layout()  # [n_layers, batch, n_kv, max_len, d_head] each
        self.cache, self.storage, self.batch = weakref.ref(cache), (k_cache.data_ptr(), v_cache.data_ptr()), k_cache.shape[1]
        self.chunk = max(1, CHUNK_BYTES // row_bytes(model.spec))  # tokens per call
        self.modules = list(model.modules())
        self.attentions = [block.attn for block in model.blocks]

    def serves(self, cache) -> bool:
        """This plan was made for ``cache`` and its K/V tensors are still the ones it points at."""
        return self.cache() is cache and tuple(t.data_ptr() for t in cache.contiguous_layout()) == self.storage

    def usable(self) -> bool:
        """Nothing changed since the plan was made that the C step would ignore (hooks, attention settings)."""
        if any(m._forward_hooks or m._forward_pre_hooks for m in self.modules):
            return False
        if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
            return False
        return all(a.backend == "sdpa" and a.relative is None and not a.record_probs for a in self.attentions)

    def step(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Logits [1, M, vocab] (or [1, 1, vocab] of the last, ``last_only``) of ``tokens`` [1, M] at the cache's
        next positions, each seeing the cache and the tokens before it; the cache advances by M (in calls of at
        most ``chunk`` tokens)."""
        cache = self.cache()  # alive: decode_step checked serves() with it in hand
        ids = tokens.reshape(-1).to(torch.int64).contiguous()
        n = ids.numel()
        logits = torch.empty(1, 1 if last_only else n, self.vocab)
        for lo in range(0, n, self.chunk):
            hi = min(lo + self.chunk, n)
            out = logits[0, -1:] if last_only else logits[0, lo:hi]  # last_only: each call's last row, the final one kept
            code = kernels.library().decode_tokens(ctypes.byref(self.structs), ids[lo:].data_ptr(), hi - lo,
                                                   cache.length, int(not last_only), out.data_ptr())
            if code:
                raise kernels.KernelError(f"decode_tokens failed (code {code})")
            cache.advance(hi - lo)
        return logits

    def step_batch(self, tokens: torch.Tensor, positions: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        """Logits [B, 1, vocab] of one new token per sequence (``tokens`` [B, 1]) at the cache's next slot, row b
        at RoPE position positions[b], seeing its cached slots where ``pad`` [B, slot + 1] (uint8) is 1; the
        cache advances by one."""
        cache = self.cache()
        ids = tokens.reshape(-1).to(torch.int64).contiguous()
        logits = torch.empty(ids.numel(), 1, self.vocab)
        code = kernels.library().decode_batch(ctypes.byref(self.structs), ids.data_ptr(), ids.numel(), cache.length,
                                              positions.data_ptr(), None if pad is None else pad.data_ptr(),
                                              logits.data_ptr())
        if code:
            raise kernels.KernelError(f"decode_batch failed (code {code})")
        cache.advance(1)
        return logits


PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its DecodePlan (of one cache)


# A prompt of any length runs through the C step, in calls of at most CHUNK_BYTES of activations (~640 tokens of
# SmolLM2). 17 rows and more: blocked products, the weights in another format than float32 converted a block of
# 48 rows at a time (through the modules, quantized weights were dequantized whole first: SmolLM2 int4 ~0.35 s).
CHUNK_BYTES = 16 << 20  # the C step's activations of one call: a longer prompt goes in several calls


def row_bytes(spec: ModelSpec) -> int:
    """The activations cpu.c's decode_rows holds per token: x, h, q, k, v, attention, gate, up, cos and sin."""
    q, kv = spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head
    return 4 * (3 * spec.d_model + 2 * q + 2 * kv + 2 * spec.d_ff + spec.d_head)


def decode_step(model: nn.Module, input_ids: torch.Tensor, cache, last_only: bool = False) -> torch.Tensor | None:
    """Logits [1, M, vocab] of M tokens of one sequence through the C step (a decoding step, a speculative
    verification, a prompt), or None when it does not apply (the modules run)."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] < 1:
        return None
    plan = usable_plan(model, input_ids, cache, input_ids.shape[1])
    if plan is None or plan.batch != 1:
        return None
    return plan.step(input_ids, last_only)


def decode_batch_step(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      cache) -> torch.Tensor | None:
    """Logits [B, 1, vocab] of one new token for each row of a batch (``input_ids`` [B, 1]; ``attention_mask``
    [B, cached + 1], 0 for padding) through the C step, or None when it does not apply (the modules run).

    Positions count each row's real tokens, as the module path's default_positions does (HF generate's rule).
    """
    if input_ids.dim() != 2 or input_ids.shape[1] != 1 or attention_mask.dim() != 2:
        return None
    length = getattr(cache, "length", 0)
    if attention_mask.shape != (input_ids.shape[0], length + 1) or not bool(attention_mask[:, -1].all()):
        return None  # a mask of another shape, or a new token that is itself padding: the modules decide
    plan = usable_plan(model, input_ids, cache, 1)
    if plan is None or plan.batch != input_ids.shape[0]:
        return None
    mask = attention_mask.to(torch.uint8).contiguous()
    positions = (mask.sum(-1, dtype=torch.int64) - 1).contiguous()  # [B]
    return plan.step_batch(input_ids, positions, None if bool(mask.all()) else mask)


def usable_plan(model: nn.Module, input_ids: torch.Tensor, cache, new: int) -> DecodePlan | None:
    """The model's DecodePlan for ``cache`` (made on first use) when the C step may take ``new`` more tokens now."""
    if torch.is_grad_enabled() or input_ids.device.type != "cpu":
        return None
    if getattr(cache, "length", 0) + new > getattr(cache, "max_len", 0):
        return None  # no room: the module path raises CacheFullError
    plan = PLANS.get(model)
    if plan is None or not plan.serves(cache):
        plan = plan_for(model, cache)
        if plan is None:
            return None
        PLANS[model] = plan
    return plan if plan.usable() else None


def plan_for(model: nn.Module, cache) -> DecodePlan | None:
    """A DecodePlan for ``model`` decoding into ``cache``, or None when the C step does not apply."""
    layout = getattr(cache, "contiguous_layout", None)
    if layout is None or not qualifies(model):
        return None
    k_cache, v_cache = layout()  # [n_layers, batch, n_kv, max_len, d_head] each
    spec = model.spec
    if k_cache.dtype != torch.float32 or model.activation_dtype != torch.float32:
        return None
    keep: list = [model.inv_freq]  # the cache's K/V are not kept: DecodePlan.serves checks them
    layers = (Layer * spec.n_layers)()
    for i, block in enumerate(model.blocks):
        attn, ffn = block.attn, block.ffn
        projs = [proj(m, keep) for m in (attn.q, attn.k, attn.v, attn.o, ffn.gate, ffn.up, ffn.down)]
        if any(p is None for p in projs) or block.cross is not None:
            return None
        norms = (block.attn_norm.weight, block.ffn_norm.weight)
        if any(n.dtype != torch.float32 for n in norms):
            return None
        keep.extend(norms)
        layers[i] = Layer(norms[0].data_ptr(), norms[1].data_ptr(), *projs, k_cache[i].data_ptr(), v_cache[i].data_ptr())
    embed = table(model, keep)
    head = proj(model.lm_head, keep) if model.lm_head is not None else table(model, keep)
    if embed is None or head is None or model.norm.weight.dtype != torch.float32:
        return None
    keep.append(model.norm.weight)
    scale = attn.scale if attn.scale is not None else spec.d_head**-0.5
    structs = Decoder(spec.n_layers, spec.d_model, spec.n_heads, spec.kv_heads, spec.d_head, model.inv_freq.numel() * 2,
                      spec.d_ff, k_cache.shape[3], spec.sliding_window or 0, spec.norm_eps, scale, model.rope_scale,
                      model.inv_freq.data_ptr(), layers, model.norm.weight.data_ptr(), embed, head)
    return DecodePlan(model, cache, structs, layers, keep)

"""Roofline latency and throughput on a device, and whether a model fits (sheet sections 10, 12).

    time = max(FLOPs / (peak · flops_efficiency), bytes / (bandwidth · bandwidth_efficiency))

(Williams et al. 2009; for LLMs Pope et al. 2022 and "LLM Inference Unveiled", arXiv:2402.16363.)
Efficiencies default to 1.0: the ideal roofline, a lower bound on time. The ridge point
peak / bandwidth (FLOP per byte) separates the regimes: an arithmetic intensity above it is
compute-bound, below it memory-bound.

    prefill of T tokens   FLOPs = calc.flops.prefill_flops    bytes = weights + KV written for T tokens
    decode step at c      FLOPs = b·(2N + 4·L·c·d_attn)       bytes = weights + KV read for c tokens
                          (decode reads every weight for b tokens: intensity ≈ b FLOP/B at 16 bits)

Pure Python: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Sequence

from llmkit.calc.flops import attention_context, causal_pairs, d_attn, matmul_params
from llmkit.calc.formats import format_bytes
from llmkit.calc.hardware import Device, get_device
from llmkit.calc.kvcache import cached_tokens, kv_bytes_per_token
from llmkit.calc.memory import MemoryEstimate, require_positive
from llmkit.calc.memory_infer import InferSettings, infer_memory
from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec

if TYPE_CHECKING:
    from llmkit.calc.params import Tensor


@dataclass(frozen=True)
class RooflineSettings:
    """Compute dtype for the peak, efficiency knobs (1.0 = ideal roofline) and the causal-attention convention."""

    dtype: str = "bf16"
    flops_efficiency: float = 1.0
    bandwidth_efficiency: float = 1.0
    causal: bool = True

    def __post_init__(self) -> None:
        for name in ("flops_efficiency", "bandwidth_efficiency"):
            if not 0 < getattr(self, name) <= 1:
                raise LlmkitError(f"{name} must be in (0, 1]; got {getattr(self, name)}")


@dataclass(frozen=True)
class Workload:
    """What the roofline needs from a model: weight bytes, matmul parameters, KV bytes per token."""

    spec: ModelSpec
    weights_bytes: int
    matmul_params: int
    kv_bytes_per_token: int
    weight_format: str
    kv_dtype: str


def workload(spec: ModelSpec, weight_format: str = "bf16", kv_dtype: str = "fp16",
             inventory: Sequence[Tensor] | None = None) -> Workload:
    """The model-side numbers of the roofline, computed once."""
    if inventory is None:
        from llmkit.calc.params import tensors

        inventory = tensors(spec)
    weights = format_bytes(spec, inventory, weight_format).total_bytes
    return Workload(spec, weights, matmul_params(spec, inventory), kv_bytes_per_token(spec, kv_dtype),
                    weight_format, kv_dtype)


@dataclass(frozen=True)
class Latency:
    """Time of one step with both roofline terms, the bound, the intensity and the ridge point."""

    seconds: float
    compute_seconds: float
    memory_seconds: float
    flops: int
    bytes: int
    tokens: int  # tokens produced (prefill: processed)
    bound: Literal["compute", "memory"]
    intensity: float  # FLOP / byte
    ridge: float  # FLOP / byte

    @property
    def tokens_per_second(self) -> float:
        """tokens / seconds."""
        return self.tokens / self.seconds


def roofline_time(flops: int, nbytes: int, tokens: int, device: Device, settings: RooflineSettings) -> Latency:
    """max(FLOPs / (peak·eff), bytes / (bandwidth·eff)), with the bound and ridge point stated."""
    compute = flops / (device.peak(settings.dtype) * settings.flops_efficiency)
    memory = nbytes / (device.bandwidth * settings.bandwidth_efficiency)
    ridge = device.peak(settings.dtype) * settings.flops_efficiency / (device.bandwidth * settings.bandwidth_efficiency)
    return Latency(max(compute, memory), compute, memory, flops, nbytes, tokens,
                   "compute" if compute >= memory else "memory", flops / nbytes, ridge)


def prefill(work: Workload, device: Device | str, prompt_len: int, batch: int = 1,
            settings: RooflineSettings = RooflineSettings()) -> Latency:
    """Prefill latency: FLOPs of T tokens (calc.flops) against weights read once + the KV written."""
    require_positive("prompt_len", prompt_len)
    require_positive("batch", batch)
    dev = get_device(device) if isinstance(device, str) else device
    spec = work.spec
    pairs = causal_pairs(spec, prompt_len) if settings.causal else prompt_len * attention_context(spec, prompt_len)
    flops = batch * (2 * work.matmul_params * prompt_len + 4 * spec.total_layers * d_attn(spec) * pairs)
    nbytes = work.weights_bytes + work.kv_bytes_per_token * cached_tokens(spec, prompt_len) * batch
    return roofline_time(flops, nbytes, prompt_len * batch, dev, settings)


def decode_step(work: Workload, device: Device | str, context: int, batch: int = 1,
                settings: RooflineSettings = RooflineSettings()) -> Latency:
    """One decode step at context c for b sequences: b·(2N + 4·L·c·d_attn) FLOPs, weights + KV(c) bytes read."""
    require_positive("context", context)
    require_positive("batch", batch)
    dev = get_device(device) if isinstance(device, str) else device
    spec = work.spec
    flops = batch * (2 * work.matmul_params + 4 * spec.total_layers * attention_context(spec, context) * d_attn(spec))
    nbytes = work.weights_bytes + work.kv_bytes_per_token * cached_tokens(spec, context) * batch
    return roofline_time(flops, nbytes, batch, dev, settings)


@dataclass(frozen=True)
class Generation:
    """Prefill plus ``new_tokens`` decode steps: time to first token, per-token latency, throughput."""

    prefill: Latency
    decode_seconds: float
    new_tokens: int
    batch: int
    last_step: Latency

    @property
    def seconds(self) -> float:
        """End-to-end: prefill + all decode steps."""
        return self.prefill.seconds + self.decode_seconds

    @property
    def decode_tokens_per_second(self) -> float:
        """Generated tokens (all sequences) per second of decoding."""
        return self.new_tokens * self.batch / self.decode_seconds


def generate(work: Workload, device: Device | str, prompt_len: int, new_tokens: int, batch: int = 1,
             settings: RooflineSettings = RooflineSettings()) -> Generation:
    """Prefill the prompt, then decode ``new_tokens`` steps at contexts prompt_len + 1 ... prompt_len + new_tokens."""
    require_positive("new_tokens", new_tokens)
    dev = get_device(device) if isinstance(device, str) else device
    first = prefill(work, dev, prompt_len, batch, settings)
    total, step = 0.0, None
    for i in range(1, new_tokens + 1):
        step = decode_step(work, dev, prompt_len + i, batch, settings)
        total += step.seconds
    assert step is not None
    return Generation(first, total, new_tokens, batch, step)


# -- fit --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """Does an inference setup fit on K devices? Required vs usable bytes, with the allowance stated."""

    fits: bool
    required_bytes: int
    usable_bytes: int
    n_devices: int
    device: str
    estimate: MemoryEstimate
    note: str


def fit(spec: ModelSpec, device: Device | str, n_devices: int = 1, settings: InferSettings = InferSettings(),
        usable_fraction: float = 0.9, inventory: Sequence[Tensor] | None = None) -> Fit:
    """Whether weights + KV + activations fit in usable_fraction of K devices' memory (vLLM's default 0.9)."""
    require_positive("n_devices", n_devices)
    if not 0 < usable_fraction <= 1:
        raise LlmkitError(f"usable_fraction must be in (0, 1]; got {usable_fraction}")
    dev = get_device(device) if isinstance(device, str) else device
    est = infer_memory(spec, settings, inventory)
    usable = int(dev.memory_bytes * usable_fraction) * n_devices
    note = (f"usable = {usable_fraction:g} x {dev.memory_bytes:,} B per device x {n_devices} (vLLM's "
            "gpu_memory_utilization default 0.9 leaves the rest for the CUDA context and runtime); "
            "assumes an even split across devices (tensor parallel)")
    return Fit(est.total_bytes <= usable, est.total_bytes, usable, n_devices, dev.key, est, note)


def _largest(ok, hi: int) -> int:
    """Largest n in [0, hi] with ok(n) true, for a monotone predicate (ok(n) implies ok(n - 1))."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def max_context(spec: ModelSpec, budget_bytes: int, settings: InferSettings = InferSettings(),
                inventory: Sequence[Tensor] | None = None, limit: int = 2**32) -> int:
    """Largest seq_len whose inference memory fits ``budget_bytes`` (0 if not even one token does); exact."""
    inv = _inventory(spec, inventory)
    return _largest(lambda n: n == 0 or infer_memory(spec, replace(settings, seq_len=n), inv).total_bytes
                    <= budget_bytes, limit)


def max_batch(spec: ModelSpec, budget_bytes: int, settings: InferSettings = InferSettings(),
              inventory: Sequence[Tensor] | None = None, limit: int = 2**32) -> int:
    """Largest batch whose inference memory at ``settings.seq_len`` fits ``budget_bytes``; exact."""
    inv = _inventory(spec, inventory)
    return _largest(lambda n: n == 0 or infer_memory(spec, replace(settings, batch=n), inv).total_bytes
                    <= budget_bytes, limit)


def _inventory(spec: ModelSpec, inventory: Sequence[Tensor] | None) -> Sequence[Tensor]:
    if inventory is not None:
        return inventory
    from llmkit.calc.params import tensors

    return tensors(spec)

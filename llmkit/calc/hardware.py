"""The device catalogue: peak FLOP/s, memory and bandwidth, each with its source (``data/hardware.toml``).

Peaks are dense (no 2:4 sparsity); see the data file's header for the conventions
(GiB capacities, decimal GB/s, fp32 accumulate on GeForce cards).

Pure Python: no torch import.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from llmkit.calc.formats import unknown
from llmkit.errors import LlmkitError

_DTYPE_KEYS = {"bf16": "bf16_tflops", "fp16": "fp16_tflops", "fp8": "fp8_tflops", "fp32": "fp32_tflops",
               "int8": "int8_tops"}


@dataclass(frozen=True)
class Device:
    """One accelerator: dense peak FLOP/s per dtype, memory bytes, bandwidth (B/s) and the source of the values."""

    key: str
    name: str
    peak_flops: dict[str, float]
    memory_bytes: int
    bandwidth: float  # bytes per second
    source: str
    aliases: tuple[str, ...] = ()

    def peak(self, dtype: str = "bf16") -> float:
        """Dense peak FLOP/s (OP/s for int8) in ``dtype``."""
        if dtype not in _DTYPE_KEYS:
            raise unknown("compute dtype", dtype, list(_DTYPE_KEYS))
        if dtype not in self.peak_flops:
            have = ", ".join(self.peak_flops)
            raise LlmkitError(f"{self.name} has no {dtype} tensor-core rate in the catalogue (it has: {have})")
        return self.peak_flops[dtype]

    def ridge_point(self, dtype: str = "bf16") -> float:
        """Roofline ridge: peak FLOP/s / bandwidth, in FLOP per byte (above it, compute-bound)."""
        return self.peak(dtype) / self.bandwidth


def _device(key: str, row: dict) -> Device:
    peaks = {dtype: float(row[col]) * 1e12 for dtype, col in _DTYPE_KEYS.items() if col in row}
    return Device(
        key=key, name=row["name"], peak_flops=peaks, memory_bytes=int(row["memory_gib"] * 2**30),
        bandwidth=float(row["bandwidth_gbs"]) * 1e9, source=row["source"], aliases=tuple(row.get("aliases", ())),
    )


@cache
def devices() -> dict[str, Device]:
    """Every device in the catalogue by key, in file order."""
    text = resources.files("llmkit.calc").joinpath("data/hardware.toml").read_text(encoding="utf-8")
    return {key: _device(key, row) for key, row in tomllib.loads(text).items()}


def get_device(name: str) -> Device:
    """The device called ``name`` (key or alias, case-insensitive); unknown names get close matches."""
    wanted = name.strip().lower().replace("_", "-").replace(" ", "-")
    for d in devices().values():
        if wanted == d.key or wanted in d.aliases:
            return d
    names = [n for d in devices().values() for n in (d.key, *d.aliases)]
    raise unknown("device", name, names)

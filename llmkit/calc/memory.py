"""Memory estimates: the result every mode returns (sheet sections 3, 7, 13).

Training is in :mod:`llmkit.calc.memory_train`, fine-tuning in
:mod:`llmkit.calc.memory_finetune`, inference in :mod:`llmkit.calc.memory_infer`;
each returns a :class:`MemoryEstimate` whose breakdown uses the keys
``weights_bytes``, ``master_weights_bytes``, ``gradients_bytes``,
``optimizer_bytes``, ``activations_bytes``, ``logits_bytes`` and
``kv_cache_bytes`` (those that apply), all exact integers.

Units: GB = 10^9 bytes, GiB = 2^30 bytes; both are printed where it matters.

Pure Python: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from llmkit.calc.formats import unknown
from llmkit.errors import LlmkitError

Mode = Literal["train", "finetune", "infer"]

GB = 10**9
GiB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by component (``breakdown``), their sum (``total_bytes``) and the convention of each term."""

    mode: Mode
    breakdown: dict[str, int]
    notes: tuple[str, ...]
    trainable_params: int | None = None
    total_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_bytes", sum(self.breakdown.values()))

    @property
    def total_gb(self) -> float:
        """total_bytes / 1e9."""
        return self.total_bytes / GB

    @property
    def total_gib(self) -> float:
        """total_bytes / 2^30."""
        return self.total_bytes / GiB

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: mode, total_bytes, breakdown, notes (and trainable_params when set)."""
        d: dict[str, Any] = {"mode": self.mode, "total_bytes": self.total_bytes, "breakdown": dict(self.breakdown),
                             "notes": list(self.notes)}
        if self.trainable_params is not None:
            d["trainable_params"] = self.trainable_params
        return d


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for non-negative integers."""
    return -(-a // b)


def require_positive(name: str, value: int) -> None:
    """Raise a LlmkitError naming ``name`` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LlmkitError(f"{name} must be a positive integer; got {value!r}")


def require_choice(name: str, value: object, allowed: tuple[Any, ...]) -> None:
    """Raise a LlmkitError naming ``name`` and the allowed values unless ``value`` is one of them."""
    if value not in allowed:
        raise unknown(name, value, [str(a) for a in allowed])

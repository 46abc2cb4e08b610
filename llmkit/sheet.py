"""The sheet's numeric tables, regenerated from code and held against what the sheet says.

Each table is a list of :class:`Check` rows: one quantity of one model, the value
llmkit computes (from the zoo's published configs and ``llmkit.calc``), the
value the sheet prints, and a mark:

    ✓  the sheet's value agrees (exactly, or within 5% where it is rounded: "110M", "32K", "~0.45")
    ✗  the sheet's value is off by more than 5%: llmkit's value is the right one

Sections covered: 1 (dimensions), 2 (parameter counts), 3 (memory per format),
6 (model family table: parameters and context), 12 (KV-cache example) and
13 (LoRA sizes). Pure Python, no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from llmkit.spec import ModelSpec

TOLERANCE = 0.05
GB = 10**9


@dataclass(frozen=True)
class Check:
    """One claim of the sheet against llmkit's computed value."""

    section: int
    table: str
    row: str
    quantity: str
    computed: str  # as printed
    says: str  # the sheet's text
    ok: bool | None  # None: not comparable (closed model, qualitative claim)
    note: str = ""

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "–"}[self.ok]


# -- parsing the sheet's numbers ----------------------------------------------------------------

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_NUMBER = re.compile(r"([0-9]+(?:[.,][0-9]+)*)\s*([KMBT]?)", re.IGNORECASE)


def parse_number(text: str, kilo: int = 1000) -> float | None:
    """The first number of a sheet cell, with its K/M/B/T suffix applied ('1.5B' -> 1.5e9); None if none."""
    m = _NUMBER.search(text.replace("×", "x"))
    if m is None:
        return None
    value = float(m.group(1).replace(",", ""))
    suffix = m.group(2).upper()
    return value * (kilo if suffix == "K" else _SUFFIX[suffix])


_RANGE = re.compile(r"^\s*~?([0-9.,]+\s*[KMBT]?)\s*[-–]\s*([0-9.,]+\s*[KMBT]?)\s*$", re.IGNORECASE)


def agrees(computed: float, says: str, kilo: int = 1000) -> bool | None:
    """Whether the sheet's cell agrees with a computed value: exact for plain integers, 5% when rounded.

    A range such as '80M-11B' (a family of sizes) agrees when the value lies in it, within 5%.
    """
    if m := _RANGE.match(says):
        lo, hi = parse_number(m.group(1), kilo), parse_number(m.group(2), kilo)
        if lo is not None and hi is not None:
            return (1 - TOLERANCE) * lo <= computed <= (1 + TOLERANCE) * hi
    claim = parse_number(says, kilo)
    if claim is None:
        return None
    rounded = bool(re.search(r"[KMBT~≈]", says, re.IGNORECASE)) or "." in says
    if not rounded:
        return claim == computed
    return abs(computed - claim) <= TOLERANCE * claim


def human(n: float) -> str:
    """1_234_567 -> '1.23M' (decimal units, as the sheet writes them)."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


# -- model tables (sections 1, 2, 6) ------------------------------------------------------------


def _quantities(spec: ModelSpec) -> dict[str, Callable[[], tuple[float, str]]]:
    """Computed value and its printed form for each quantity a sheet row may claim."""
    from llmkit.calc.params import count_params

    def params() -> tuple[float, str]:
        c = count_params(spec)
        text = f"{c.total:,} ({human(c.total)})"
        if spec.is_moe:
            text += f"; active {c.active:,} ({human(c.active)})"
        return c.total, text

    def n_layers() -> tuple[float, str]:
        if spec.family == "encoder-decoder":
            return spec.n_encoder_layers, f"{spec.n_encoder_layers}+{spec.n_layers}"
        return spec.n_layers, str(spec.n_layers)

    return {
        "params": params,
        "d_model": lambda: (spec.d_model, str(spec.d_model)),
        "n_heads": lambda: (spec.n_heads, str(spec.n_heads)),
        "d_head": lambda: (spec.d_head, str(spec.d_head)),
        "d_ff": lambda: (spec.d_ff, str(spec.d_ff)),
        "n_layers": n_layers,
        "vocab": lambda: (spec.vocab_size, f"{spec.vocab_size:,}"),
        "context": lambda: (spec.max_positions, f"{spec.max_positions:,}"),
    }


def _moe_params_ok(spec: ModelSpec, says: str) -> bool:
    """A MoE cell such as '~47B active 8B' or '8B active (47B total)': both numbers must agree."""
    from llmkit.calc.params import count_params

    c = count_params(spec)
    numbers = [parse_number(m.group(0)) for m in _NUMBER.finditer(says)]
    if len(numbers) < 2:
        return bool(agrees(c.total, says))
    total_claim, active_claim = (max(numbers), min(numbers))
    return (abs(c.total - total_claim) <= TOLERANCE * total_claim
            and abs(c.active - active_claim) <= TOLERANCE * active_claim)


def model_checks() -> list[Check]:
    """Sections 1, 2 and 6: every sheet row the zoo records, each claimed quantity against the spec."""
    from llmkit import zoo

    out: list[Check] = []
    for name in zoo.names():
        entry = zoo.entry(name)
        spec = entry.spec() if entry.published else None
        quantities = _quantities(spec) if spec else {}
        for row in entry.sheet:
            for quantity, says in row.claims.items():
                if quantity not in ("params", "d_model", "n_heads", "d_head", "d_ff", "n_layers", "vocab", "context"):
                    continue
                if spec is None:
                    out.append(Check(row.section, row.table, row.row, quantity, "not published", says, None,
                                     entry.notes))
                    continue
                value, text = quantities[quantity]()
                kilo = 1024 if quantity == "context" else 1000
                if quantity == "params" and spec.is_moe:
                    ok = _moe_params_ok(spec, says)
                elif quantity == "n_layers" and "+" in says:
                    ok = says.replace(" ", "") == text
                elif says.strip() in ("—", "-", ""):
                    ok = None
                else:
                    ok = agrees(value, says, kilo)
                    if ok is False and quantity == "vocab" and "K" in says.upper():
                        ok = agrees(value, says, 1024)  # '128K' vocab can mean 128 * 1024
                    if ok is False and quantity == "context":
                        ok = agrees(value, says, 1000)
                out.append(Check(row.section, row.table, row.row, quantity, text, says, ok,
                                 f"{entry.title}: {entry.source}"))
    return out


# -- section 3: memory per format ---------------------------------------------------------------

# The sheet's rows: format -> (bytes/param, GB per 1B, GB for 7B, GB for 70B) as printed.
SECTION3 = {
    "fp32": ("4", "4.0", "28", "280"),
    "fp16": ("2", "2.0", "14", "140"),
    "bf16": ("2", "2.0", "14", "140"),
    "int8": ("1", "1.0", "7", "70"),
    "int4": ("0.5", "0.5", "3.5", "35"),
    "q4_k_m": ("~0.45", "~0.45", "4", "40"),
    "q8_0": ("~0.9", "~0.9", "6", "56"),
}


def memory_checks(small: str = "llama-2-7b", large: str = "llama-2-70b") -> list[Check]:
    """Section 3: bytes per parameter and weight bytes of real 7B / 70B models, format by format.

    Plain dtypes are exactly their element size. INT8/INT4 are the weights alone (no scales), as
    the sheet means them. GGUF Q4_K_M and Q8_0 are computed per tensor the way llama.cpp assigns
    types, on LLaMA-2-7B / 70B, including block scales (Q8_0 is 8.5 bits, not 8).
    """
    from llmkit import zoo
    from llmkit.calc.formats import format_bytes
    from llmkit.calc.params import tensors

    table = "Memory per Billion Parameters by Format"
    specs = {size: zoo.get(name) for size, name in (("7B", small), ("70B", large))}
    inventories = {size: tensors(s) for size, s in specs.items()}
    out = []
    for fmt, (bpp, per_1b, gb7, gb70) in SECTION3.items():
        w = {size: format_bytes(specs[size], inventories[size], fmt) for size in specs}
        if fmt in ("int8", "int4"):
            bytes_per_param = {"int8": 1.0, "int4": 0.5}[fmt]
            real = {size: int(bytes_per_param * sum(t.numel for t in inventories[size])) for size in specs}
            how = "weights only, no scales"
        else:
            bytes_per_param = w["7B"].total_bytes / w["7B"].n_params
            real = {size: w[size].total_bytes for size in specs}
            how = w["7B"].convention
        row = fmt.upper()
        out.append(Check(3, table, row, "bytes/param", f"{bytes_per_param:.4g}", bpp,
                         agrees(bytes_per_param, bpp), how))
        out.append(Check(3, table, row, "GB per 1B params", f"{bytes_per_param:.4g}", per_1b,
                         agrees(bytes_per_param, per_1b), "10^9 bytes"))
        for size, says in (("7B", gb7), ("70B", gb70)):
            spec_name = specs[size].name
            value = real[size] / GB
            out.append(Check(3, table, row, f"GB for {size}", f"{value:.2f} ({spec_name})", says,
                             agrees(value, f"~{says}"),
                             f"{sum(t.numel for t in inventories[size]):,} parameters of {spec_name}"))
    return out


# -- section 12: the KV-cache example -----------------------------------------------------------


def kv_checks() -> list[Check]:
    """Section 12: LLaMA 2-7B fp16 KV at 4096 tokens, and the 128K figure (LLaMA 3.1 uses GQA)."""
    from llmkit import zoo
    from llmkit.calc.kvcache import kv_cache_bytes

    table = "KV Cache example"
    l2 = zoo.get("llama-2-7b")
    l3 = zoo.get("llama-3-8b")
    at4k = kv_cache_bytes(l2, 4096, 1, "fp16")
    mha128 = kv_cache_bytes(l2, 128 * 1024, 1, "fp16", window=None)
    gqa128 = kv_cache_bytes(l3, 128 * 1024, 1, "fp16", window=None)
    return [
        Check(12, table, "LLaMA 2-7B, fp16, 4096 tokens", "KV bytes", f"{at4k / GB:.3f} GB ({at4k:,} B = 2 GiB)",
              "≈ 2.1 GB", agrees(at4k / GB, "~2.1"), "2·32·32·128·4096·2 bytes"),
        Check(12, table, "LLaMA 3.1 at 128K tokens", "KV bytes", f"{gqa128 / GB:.2f} GB",
              "67 GB", agrees(gqa128 / GB, "~67"),
              f"LLaMA 3.1-8B has 8 KV heads (GQA): 2·32·8·128 B·2 per token; the sheet scales LLaMA 2-7B's "
              f"MHA cache ({mha128 / GB:.1f} GB at 128K)"),
    ]


# -- section 13: LoRA sizes ---------------------------------------------------------------------


def lora_checks() -> list[Check]:
    """Section 13 / 7: 'r=16 adds ~30M params to a 7B model (0.4%)', for each target preset."""
    from llmkit import zoo
    from llmkit.calc.memory_finetune import lora_params
    from llmkit.calc.params import count_params, tensors

    table = "PEFT sizes"
    spec = zoo.get("llama-2-7b")
    inv = tensors(spec)
    total = count_params(spec).total
    out = []
    for targets in ("qv", "qkvo", "all-linear"):
        n = lora_params(inv, 16, targets)
        out.append(Check(13, table, f"LoRA r=16 on LLaMA-2-7B, targets {targets}", "trainable params",
                         f"{n:,} ({n / total:.2%})", "~30M (0.4%)", agrees(n, "~30M"),
                         "r·(d_in + d_out) per adapted matrix (Hu et al. 2021)"))
    return out


def all_checks() -> list[Check]:
    """Every table the sheet prints numbers in, recomputed."""
    return sorted(model_checks() + memory_checks() + kv_checks() + lora_checks(), key=lambda c: c.section)


def to_markdown(checks: list[Check]) -> str:
    """The checks as Markdown tables, one per sheet table, with a 'sheet says' column and a mark."""
    lines = ["# The sheet's numbers, recomputed by llmkit", "",
             "✓ the sheet agrees (within 5% where it rounds) · ✗ the sheet is wrong by more than 5% · "
             "– nothing to compare (closed model)", ""]
    seen: list[tuple[int, str]] = []
    for c in checks:
        if (c.section, c.table) not in seen:
            seen.append((c.section, c.table))
    for section, table in seen:
        lines += [f"## Section {section}: {table}", "", "| row | quantity | llmkit | sheet says | | note |",
                  "|---|---|---|---|---|---|"]
        for c in checks:
            if (c.section, c.table) == (section, table):
                cells = (c.row, c.quantity, c.computed, c.says, c.mark, c.note)
                lines.append("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
        lines.append("")
    return "\n".join(lines)

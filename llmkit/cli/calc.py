"""``llmkit calc``: the sizing calculator (sheet sections 2, 3, 7, 12, 13) on the command line.

Thin: every number comes from ``llmkit.calc``; this module parses flags into the
settings dataclasses and prints a rich table, or one JSON object with ``--json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Any, Optional

import typer

from llmkit.errors import LlmkitError

app = typer.Typer(help="Parameters, memory, KV cache, FLOPs, latency and fit for any architecture.",
                  no_args_is_help=True)

MODEL_HELP = "Zoo name (see `llmkit zoo list`), a HF config.json (or its directory), or a .gguf file."
GB, GiB = 10**9, 2**30


# -- shared helpers ---------------------------------------------------------------------------


def _spec(model: str):
    from llmkit.zoo import resolve_spec

    return resolve_spec(model)


def _emit_json(obj: Any) -> None:
    def default(o: Any) -> Any:
        if is_dataclass(o):
            return asdict(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    print(json.dumps(obj, indent=2, default=default))


def _size(n: int) -> str:
    """Bytes as GB (1e9) and GiB (2^30): both are in use and the sheet mixes them."""
    return f"{n / GB:,.3f} GB  ({n / GiB:,.3f} GiB)"


def _table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...], notes: tuple[str, ...] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for note in notes:
        console.print(f"[dim]- {note}[/dim]")


def _window(value: str) -> int | str | None:
    if value == "auto":
        return "auto"
    if value == "none":
        return None
    try:
        w = int(value)
    except ValueError:
        raise LlmkitError(f"--window must be auto, none or a positive integer; got {value!r}") from None
    if w <= 0:
        raise LlmkitError(f"--window must be a positive integer; got {w}")
    return w


def _memory_rows(est) -> list[tuple[str, str, str]]:
    rows = [(k.removesuffix("_bytes").replace("_", " "), f"{v:,}", _size(v)) for k, v in est.breakdown.items()]
    rows.append(("total", f"{est.total_bytes:,}", _size(est.total_bytes)))
    return rows


# -- params -----------------------------------------------------------------------------------


@app.command()
def params(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Exact parameter count by component; total vs active for MoE; the sheet's 12·L·d² beside it."""
    from llmkit.calc.params import count_params

    spec = _spec(model)
    c = count_params(spec)
    if as_json:
        out = {"model": spec.name, "total": c.total, "non_embedding": c.non_embedding}
        if spec.is_moe:
            out["active"] = c.active
        out |= {"by_component": c.by_component, "approx_12Ld2": c.approx_12Ld2,
                "approx_Vd_12Ld2": c.approx_Vd_12Ld2, "convention": c.convention}
        _emit_json(out)
        return
    rows = [(k, f"{v:,}", f"{v / c.total:.1%}") for k, v in c.by_component.items()]
    rows.append(("total", f"{c.total:,}", "100%"))
    rows.append(("non-embedding (Kaplan N)", f"{c.non_embedding:,}", f"{c.non_embedding / c.total:.1%}"))
    if spec.is_moe:
        rows.append((f"active per token ({spec.experts_per_token} of {spec.n_experts} experts)",
                     f"{c.active:,}", f"{c.active / c.total:.1%}"))
    rows.append(("sheet: 12·L·d²", f"{c.approx_12Ld2:,}", f"error {c.approx_12Ld2_error:+.1%}"))
    rows.append(("sheet: V·d + 12·L·d²", f"{c.approx_Vd_12Ld2:,}", f"error {c.approx_Vd_12Ld2_error:+.1%}"))
    _table(f"Parameters of {spec.name}", rows, ("component", "parameters", "share"),
           (f"convention: {c.convention}",))


# -- kv -----------------------------------------------------------------------------------------


@app.command()
def kv(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    seq_len: int = typer.Option(4096, "--seq-len", help="Tokens per sequence held in the cache."),
    batch: int = typer.Option(1, "--batch", help="Sequences."),
    dtype: str = typer.Option("fp16", "--dtype", help="fp32, fp16, bf16, fp8, int8, q8_0 or q4_0."),
    window: str = typer.Option("auto", "--window", help="auto (the model's own sliding window), none, or W."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="Paged cache: round tokens up to blocks."),
    encoder_len: Optional[int] = typer.Option(None, "--encoder-len", help="Encoder-decoders: encoder tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """KV-cache bytes: 2·L·n_kv·d_head·bytes·tokens·batch (sheet section 12)."""
    from llmkit.calc.kvcache import kv_cache

    spec = _spec(model)
    c = kv_cache(spec, seq_len, batch, dtype, _window(window), block_size=block_size, encoder_len=encoder_len)
    if as_json:
        _emit_json({"model": spec.name, "seq_len": seq_len, "batch": batch, "dtype": dtype} | asdict(c))
        return
    rows = [("bytes per token", f"{c.bytes_per_token:,}", _size(c.bytes_per_token)),
            ("tokens cached per sequence", f"{c.tokens_cached:,}", "")]
    if c.cross_attention_bytes:
        rows += [("self-attention", f"{c.self_attention_bytes:,}", _size(c.self_attention_bytes)),
                 ("cross-attention", f"{c.cross_attention_bytes:,}", _size(c.cross_attention_bytes))]
    rows.append(("KV cache", f"{c.bytes:,}", _size(c.bytes)))
    _table(f"KV cache of {spec.name} ({spec.attention_kind}, {spec.kv_heads} KV heads), {seq_len:,} tokens x {batch}",
           rows, ("", "bytes", "size"), (c.convention,))


# -- memory -------------------------------------------------------------------------------------


@app.command()
def memory(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    mode: str = typer.Option("infer", "--mode", help="train, finetune or infer."),
    fmt: str = typer.Option("bf16", "--format", help="Weights: fp32, fp16, bf16, int8, int4, nf4, q4_k_m, q8_0, ..."),
    seq_len: int = typer.Option(2048, "--seq-len"),
    batch: int = typer.Option(1, "--batch"),
    kv_dtype: str = typer.Option("fp16", "--kv-dtype", help="Inference: KV-cache dtype."),
    window: str = typer.Option("auto", "--window", help="Inference: auto, none or W."),
    precision: str = typer.Option("mixed-bf16", "--precision", help="Training: fp32, mixed-fp16, mixed-bf16, bf16."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd, sgd-momentum, adam, adamw, adam-8bit, adafactor."),
    convention: str = typer.Option("zero-16", "--convention", help="Bytes/param convention: zero-16 (ZeRO paper), fp32-grads-18 (HF), deepspeed-20."),
    zero: int = typer.Option(0, "--zero", help="ZeRO stage 0-3."),
    devices: int = typer.Option(1, "--devices", help="Data-parallel devices for ZeRO."),
    recompute: str = typer.Option("none", "--recompute", help="Activation recomputation: none, selective, full."),
    flash: bool = typer.Option(False, "--flash", help="FlashAttention (no s×s score matrix)."),
    method: str = typer.Option("lora", "--method", help="Fine-tuning: full, lora, qlora, prefix, prompt, adapter, ia3."),
    rank: int = typer.Option(16, "--rank", help="LoRA rank r."),
    alpha: Optional[int] = typer.Option(None, "--alpha", help="LoRA alpha (default r)."),
    targets: str = typer.Option("qv", "--targets", help="LoRA targets: qv, qkvo, all-linear."),
    virtual_tokens: int = typer.Option(20, "--virtual-tokens", help="Prefix / prompt tuning tokens."),
    bottleneck: int = typer.Option(64, "--bottleneck", help="Adapter bottleneck width."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Training, fine-tuning or inference memory with its breakdown (sheet sections 3, 7, 13)."""
    from llmkit.calc.memory_finetune import FinetuneSettings, finetune_memory
    from llmkit.calc.memory_infer import InferSettings, infer_memory
    from llmkit.calc.memory_train import TrainSettings, train_memory

    spec = _spec(model)
    train = TrainSettings(batch=batch, seq_len=seq_len, precision=precision, optimizer=optimizer,
                          convention=convention, zero_stage=zero, n_devices=devices, recompute=recompute,
                          flash_attention=flash)
    if mode == "train":
        est = train_memory(spec, train)
    elif mode == "finetune":
        est = finetune_memory(spec, FinetuneSettings(method=method, rank=rank, alpha=alpha, targets=targets,
                                                     virtual_tokens=virtual_tokens, bottleneck=bottleneck,
                                                     train=train))
    elif mode == "infer":
        est = infer_memory(spec, InferSettings(format=fmt, seq_len=seq_len, batch=batch, kv_dtype=kv_dtype,
                                               window=_window(window)))
    else:
        raise LlmkitError(f"--mode must be train, finetune or infer; got {mode!r}")
    if as_json:
        _emit_json({"model": spec.name} | est.to_dict())
        return
    notes = est.notes
    if est.trainable_params is not None:
        notes = (f"trainable parameters: {est.trainable_params:,}",) + notes
    _table(f"{mode} memory of {spec.name}", _memory_rows(est), ("", "bytes", "size"), notes)


# -- flops --------------------------------------------------------------------------------------


@app.command()
def flops(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    tokens: int = typer.Option(10**12, "--tokens", help="Training tokens D."),
    seq_len: int = typer.Option(2048, "--seq-len", help="Training sequence length / inference context."),
    prompt_len: int = typer.Option(512, "--prompt-len", help="Prefill length."),
    causal: bool = typer.Option(False, "--causal", help="Count only the causal half of the attention scores."),
    tokens_per_second: Optional[float] = typer.Option(None, "--tokens-per-second", help="Measured training throughput, for MFU."),
    device: Optional[str] = typer.Option(None, "--device", help="Device for MFU (see `llmkit calc devices`)."),
    devices: int = typer.Option(1, "--devices", help="Devices the throughput was measured on."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Training FLOPs (6·N·D + attention), forward FLOPs per token, prefill vs decode, and MFU."""
    from llmkit.calc import flops as F
    from llmkit.calc.hardware import get_device

    spec = _spec(model)
    train = F.training_flops(spec, tokens, seq_len, causal)
    per_token = F.forward_flops_per_token(spec, seq_len)
    pre = F.prefill_flops(spec, prompt_len, causal=causal)
    dec = F.decode_flops(spec, seq_len)
    out: dict[str, Any] = {
        "model": spec.name, "training_flops": train.total, "training_flops_6ND": train.dense,
        "training_attention_flops": train.attention, "forward_flops_per_token": per_token.total,
        "prefill_flops": pre.total, "decode_step_flops": dec.total, "convention": train.convention,
    }
    if tokens_per_second is not None:
        if device is None:
            raise LlmkitError("--tokens-per-second needs --device to compute MFU")
        dev = get_device(device)
        peak = dev.peak_flops.get("bf16") or max(dev.peak_flops.values())
        out["mfu"] = F.mfu(spec, tokens_per_second, peak * devices, seq_len, causal)
    if as_json:
        _emit_json(out)
        return
    rows = [
        (f"training, D = {tokens:,} tokens", f"{train.total:.4e}", f"6·N·D = {train.dense:.4e}"),
        (f"forward per token at context {seq_len:,}", f"{per_token.total:.4e}", f"attention {per_token.attention:.3e}"),
        (f"prefill of {prompt_len:,} tokens", f"{pre.total:.4e}", ""),
        (f"decode step at context {seq_len:,}", f"{dec.total:.4e}", ""),
    ]
    if "mfu" in out:
        rows.append(("MFU", f"{out['mfu']:.1%}", f"{tokens_per_second:,.0f} tok/s on {devices} x {device}"))
    _table(f"FLOPs of {spec.name}", rows, ("", "FLOPs", ""), (train.convention,))


# -- latency and fit ----------------------------------------------------------------------------


@app.command()
def latency(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    device: str = typer.Option("a100-80gb", "--device", help="Device (see `llmkit calc devices`)."),
    fmt: str = typer.Option("bf16", "--format", help="Weight format."),
    kv_dtype: str = typer.Option("fp16", "--kv-dtype"),
    prompt_len: int = typer.Option(512, "--prompt-len"),
    new_tokens: int = typer.Option(128, "--new-tokens"),
    batch: int = typer.Option(1, "--batch"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Roofline latency and throughput: prefill and per-token decode, compute- or memory-bound."""
    from llmkit.calc import roofline as R
    from llmkit.calc.hardware import get_device

    spec = _spec(model)
    dev = get_device(device)
    work = R.workload(spec, fmt, kv_dtype)
    gen = R.generate(work, dev, prompt_len, new_tokens, batch)
    out = {
        "model": spec.name, "device": dev.key, "prefill_seconds": gen.prefill.seconds,
        "prefill_bound": gen.prefill.bound, "decode_step_seconds": gen.last_step.seconds,
        "decode_bound": gen.last_step.bound, "decode_tokens_per_second": gen.decode_tokens_per_second,
        "end_to_end_seconds": gen.seconds, "ridge_flops_per_byte": gen.prefill.ridge,
    }
    if as_json:
        _emit_json(out)
        return
    p, d = gen.prefill, gen.last_step
    rows = [
        (f"prefill {prompt_len:,} tokens x {batch}", f"{p.seconds * 1e3:,.2f} ms", f"{p.bound}-bound, {p.intensity:,.1f} FLOP/B"),
        (f"decode step (context {prompt_len + new_tokens:,})", f"{d.seconds * 1e3:,.3f} ms", f"{d.bound}-bound, {d.intensity:,.1f} FLOP/B"),
        ("decode throughput", f"{gen.decode_tokens_per_second:,.1f} tok/s", f"batch {batch}"),
        (f"end to end ({new_tokens} new tokens)", f"{gen.seconds:,.3f} s", ""),
    ]
    _table(f"{spec.name} on {dev.name}, weights {fmt}", rows, ("", "time", "why"),
           (f"ridge point {p.ridge:,.0f} FLOP/B: below it a step is memory-bound; 100% efficiency assumed",))


@app.command()
def fit(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    device: str = typer.Option("a100-80gb", "--device", help="Device (see `llmkit calc devices`)."),
    count: int = typer.Option(1, "--count", help="Number of devices."),
    fmt: str = typer.Option("bf16", "--format", help="Weight format."),
    seq_len: int = typer.Option(4096, "--seq-len"),
    batch: int = typer.Option(1, "--batch"),
    kv_dtype: str = typer.Option("fp16", "--kv-dtype"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Does inference fit on K devices? And the largest context and batch that fit."""
    from llmkit.calc import roofline as R
    from llmkit.calc.hardware import get_device
    from llmkit.calc.memory_infer import InferSettings
    from llmkit.calc.params import tensors

    spec = _spec(model)
    dev = get_device(device)
    settings = InferSettings(format=fmt, seq_len=seq_len, batch=batch, kv_dtype=kv_dtype)
    inv = tensors(spec)
    f = R.fit(spec, dev, count, settings, inventory=inv)
    ctx = R.max_context(spec, f.usable_bytes, settings, inventory=inv)
    bat = R.max_batch(spec, f.usable_bytes, settings, inventory=inv)
    out = {"model": spec.name, "device": dev.key, "count": count, "fits": f.fits,
           "required_bytes": f.required_bytes, "usable_bytes": f.usable_bytes,
           "max_context": ctx, "max_batch": bat, "breakdown": f.estimate.breakdown, "note": f.note}
    if as_json:
        _emit_json(out)
        return
    verdict = "[green]fits[/green]" if f.fits else "[red]does not fit[/red]"
    rows = _memory_rows(f.estimate) + [
        ("usable memory", f"{f.usable_bytes:,}", _size(f.usable_bytes)),
        (f"largest context at batch {batch}", f"{ctx:,} tokens", ""),
        (f"largest batch at {seq_len:,} tokens", f"{bat:,}", ""),
    ]
    _table(f"{spec.name}, {fmt}, on {count} x {dev.name}: {verdict}", rows, ("", "bytes", "size"), (f.note,))


@app.command()
def devices(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """The device catalogue: peak FLOP/s, memory and bandwidth, with sources."""
    from llmkit.calc.hardware import devices as catalogue

    devs = catalogue()
    if as_json:
        _emit_json({k: asdict(d) for k, d in devs.items()})
        return
    rows = [(d.key, d.name, f"{d.peak_flops.get('bf16', 0) / 1e12:,.1f}", f"{d.memory_bytes / GB:,.0f} GB",
             f"{d.bandwidth / 1e9:,.0f} GB/s") for d in devs.values()]
    _table("Devices", rows, ("key", "name", "bf16 TFLOP/s", "memory", "bandwidth"))


@app.command()
def tokens(
    text_chars: Optional[int] = typer.Option(None, "--chars", help="Characters of text."),
    words: Optional[int] = typer.Option(None, "--words", help="Words of text."),
    n_tokens: Optional[int] = typer.Option(None, "--tokens", help="Tokens."),
    kind: str = typer.Option("english", "--kind", help="english, code or non-latin (sheet section 5)."),
    price_per_1k: Optional[float] = typer.Option(None, "--price-per-1k", help="Price per 1K tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Tokens from characters or words by the sheet's rules of thumb, and their cost."""
    from llmkit.calc import tokens as T

    given = [x is not None for x in (text_chars, words, n_tokens)]
    if sum(given) != 1:
        raise LlmkitError("give exactly one of --chars, --words, --tokens")
    if text_chars is not None:
        n = T.tokens_from_chars(text_chars, kind)
    elif words is not None:
        n = T.tokens_from_words(words)
    else:
        n = float(n_tokens)
    out: dict[str, Any] = {"tokens": n, "words": T.words_from_tokens(round(n)),
                           "characters": T.chars_from_tokens(round(n), kind), "pages": T.pages_from_tokens(round(n))}
    if price_per_1k is not None:
        out["cost"] = T.cost(round(n), price_per_1k)
    if as_json:
        _emit_json(out)
        return
    rows = [(k, f"{v:,.2f}") for k, v in out.items()]
    _table(f"Rules of thumb ({kind})", rows, ("", "value"),
           ("~4 characters per English token, 1.3 tokens per word, 1000 tokens ≈ 750 words ≈ 3 pages (sheet section 5)",))

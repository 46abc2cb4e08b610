"""``llmkit advise``: the sheet's decision matrices (sections 7, 8, 9, 13), each choice with its reasons."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Optional

import typer

from llmkit.errors import LlmkitError

app = typer.Typer(help="Which fine-tuning method, quantization, decoding preset; RAG or fine-tuning.",
                  no_args_is_help=True)
MODEL_HELP = "Zoo name, HF config.json (or its directory) or .gguf file."


def _show(advice, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(advice), indent=2, default=str))
        return
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{advice.choice}[/bold]")
    for reason in advice.reasons:
        console.print(f"  - {reason}")
    if advice.alternatives:
        console.print(f"[dim]  considered: {', '.join(advice.alternatives)}[/dim]")


def _gb(value: float, flag: str) -> int:
    if value <= 0:
        raise LlmkitError(f"{flag} must be positive (GB); got {value}")
    return int(value * 10**9)


@app.command()
def finetune(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    examples: int = typer.Option(..., "--examples", help="Labelled examples you have."),
    memory_gb: float = typer.Option(24.0, "--memory-gb", help="GPU memory available, GB."),
    goal: str = typer.Option("task", "--goal", help="task, alignment or multi-task."),
    seq_len: int = typer.Option(512, "--seq-len"),
    batch: int = typer.Option(1, "--batch"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Full FT, LoRA, QLoRA, adapters, prompting or DPO (sheet section 7), checked against memory."""
    from llmkit.advise import FinetuneQuestion, finetune_method
    from llmkit.zoo import resolve_spec

    q = FinetuneQuestion(examples, _gb(memory_gb, "--memory-gb"), goal, seq_len, batch)
    _show(finetune_method(resolve_spec(model), q), as_json)


@app.command()
def quantize(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    target: str = typer.Option("consumer-gpu", "--target", help="cloud-gpu, cloud-gpu-cost, consumer-gpu, cpu, mobile."),
    memory_gb: Optional[float] = typer.Option(None, "--memory-gb", help="Memory available, GB."),
    seq_len: int = typer.Option(4096, "--seq-len"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The quantization format for a target device (sheet section 8), best quality that fits."""
    from llmkit.advise import quantization
    from llmkit.zoo import resolve_spec

    memory = None if memory_gb is None else _gb(memory_gb, "--memory-gb")
    _show(quantization(resolve_spec(model), target, memory, seq_len), as_json)


@app.command()
def decode(
    task: str = typer.Argument(..., help="factual, qa, code, chat, general, story, creative, brainstorm, translation, summarization."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The decoding preset for a task (sheet section 9)."""
    from llmkit.advise import decoding_preset

    _show(decoding_preset(task), as_json)


@app.command()
def rag(
    examples: int = typer.Option(0, "--examples", help="Labelled examples you have."),
    dynamic: bool = typer.Option(False, "--dynamic", help="The knowledge changes over time."),
    citations: bool = typer.Option(False, "--citations", help="Answers must cite sources."),
    style: bool = typer.Option(False, "--style", help="You need a style or format change."),
    reasoning: bool = typer.Option(False, "--reasoning", help="Task-specific reasoning must be learned."),
    latency: bool = typer.Option(False, "--latency", help="Latency is critical (no retrieval step)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """RAG or fine-tuning (sheet section 13)."""
    from llmkit.advise import RagQuestion, rag_or_finetune

    if examples < 0:
        raise LlmkitError(f"--examples must be non-negative; got {examples}")
    _show(rag_or_finetune(RagQuestion(dynamic, citations, examples, style, reasoning, latency)), as_json)

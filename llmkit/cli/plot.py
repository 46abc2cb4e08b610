"""``llmkit plot``: PNG pictures of positional encodings and of a real model's attention (llmkit.viz)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from llmkit.errors import LlmkitError

app = typer.Typer(help="Draw the sheet's mechanisms as PNG files (matplotlib).", no_args_is_help=True)
err = Console(stderr=True)

MODEL_HELP = "A .gguf file, a HF model directory, or a pullable name (see `llmkit pull --list`)."


def _report(paths: list[Path], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"files": [str(p) for p in paths]}))
    else:
        for p in paths:
            print(p)


@app.command()
def positions(
    out: Path = typer.Option(Path("plots"), "--out", help="Folder for the PNG files (created if missing)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the files written."),
) -> None:
    """Sinusoidal table, RoPE rotation and decay, ALiBi biases and T5 buckets, one PNG each."""
    from llmkit.viz import position_pictures

    _report(position_pictures(out), as_json)


def self_attention_layers(model) -> list:
    """The model's self-attention modules in order (cross-attention layers left out)."""
    from llmkit.nn.attention import Attention

    return [m for m in model.modules() if isinstance(m, Attention) and not m.cross]


def record_attention(loaded, prompt: str, layer: int):
    """(probabilities [heads, q, kv], token labels) of one self-attention layer of a loaded model on a prompt."""
    import torch

    if loaded.tokenizer is None:
        raise LlmkitError("this model has no tokenizer; plot attention needs one to read the prompt")
    ids = loaded.tokenizer.encode(prompt)
    if not ids:
        raise LlmkitError("the prompt is empty after tokenization; give some text")
    layers = self_attention_layers(loaded.model)
    if not 0 <= layer < len(layers):
        raise LlmkitError(f"--layer must be between 0 and {len(layers) - 1} for this model; got {layer}")
    attn = layers[layer]
    attn.record_probs = True
    try:
        with torch.no_grad():
            loaded.model(torch.tensor([ids]))
    finally:
        attn.record_probs = False
    labels = [loaded.tokenizer.token_bytes(i).decode("utf-8", "replace") for i in ids]
    return attn.probs[0], labels


@app.command()
def attention(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    prompt: str = typer.Option(..., "--prompt", help="The text whose attention is drawn."),
    layer: int = typer.Option(0, "--layer", help="Self-attention layer, counted from 0."),
    out: Path | None = typer.Option(None, "--out", help="PNG file (default attention_layer<L>.png)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the file written."),
) -> None:
    """Heat maps of a real model's attention probabilities, one per head, for one layer."""
    from llmkit.load import load
    from llmkit.viz import attention_picture

    with err.status(f"loading {model}…"):
        loaded = load(model)
    probs, labels = record_attention(loaded, prompt, layer)
    path = out or Path(f"attention_layer{layer}.png")
    title = f"{Path(str(model)).name}, layer {layer}: attention probabilities (query rows, key columns)"
    _report([attention_picture(probs, labels, path, title)], as_json)

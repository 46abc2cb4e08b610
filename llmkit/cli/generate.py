"""``llmkit generate`` and ``llmkit chat``: parse, call llmkit.generate, print (streaming)."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console

from llmkit.errors import LlmkitError
from llmkit.load import FASTEST_PRECISION, PRECISIONS

err = Console(stderr=True)

MODEL_HELP = "A .gguf file, a HF model directory, or a pullable name (see `llmkit pull --list`)."
PRECISION_HELP = f"How weights are held in memory: {', '.join(PRECISIONS)} (default {FASTEST_PRECISION})."


def _precision(value: str) -> str:
    if value not in PRECISIONS:
        raise LlmkitError(f"--precision must be one of {', '.join(PRECISIONS)}; got {value!r}")
    return value


def _load(model: str, precision: str, need_chat: bool):
    from llmkit.load import load

    with err.status(f"loading {model} ({precision})…"):
        loaded = load(model, _precision(precision))
    if loaded.tokenizer is None:
        raise LlmkitError(f"{model}: no tokenizer found with this model; generation needs one (use a .gguf file)")
    if need_chat and loaded.chat_template is None:
        raise LlmkitError(f"{model}: the model has no chat template; drop --chat and give a plain prompt")
    return loaded


def generation_config(
    greedy: bool, do_sample: bool, temperature: Optional[float], top_k: Optional[int], top_p: Optional[float],
    seed: Optional[int], max_new_tokens: int, stop: list[str],
):
    """The GenerationConfig the flags describe: sampling when asked for or when any sampling flag is given."""
    from llmkit.generate.config import GenerationConfig

    sampling_flags = [f for f, v in (("--temperature", temperature), ("--top-k", top_k), ("--top-p", top_p),
                                     ("--seed", seed)) if v is not None]
    if greedy and (do_sample or sampling_flags):
        raise LlmkitError(f"--greedy cannot be combined with {', '.join(sampling_flags) or '--do-sample'}")
    return GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=do_sample or bool(sampling_flags),
        temperature=1.0 if temperature is None else temperature, top_k=top_k, top_p=top_p, seed=seed,
        stop=tuple(stop),
    )


def _stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def generate_command(
    prompt: str = typer.Option(..., "--prompt", "-p", help="The prompt text."),
    model: str = typer.Option("smollm2", "--model", "-m", help=MODEL_HELP),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in the model's chat template."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt (with --chat)."),
    greedy: bool = typer.Option(False, "--greedy", help="Always take the most likely token (the default)."),
    do_sample: bool = typer.Option(False, "--do-sample", help="Sample instead of greedy decoding."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature T > 0."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Sample among the k most likely tokens."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Sample from the smallest set with mass >= p."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the sampling generator."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", help="Most tokens to generate."),
    stop: list[str] = typer.Option([], "--stop", help="Stop when the text contains this string (repeatable)."),
    precision: str = typer.Option(FASTEST_PRECISION, "--precision", help=PRECISION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of streaming."),
) -> None:
    """Generate text from a prompt, streaming it token by token."""
    from llmkit.generate.chat import conversation, encode_chat
    from llmkit.generate.loop import generate

    if system is not None and not chat:
        raise LlmkitError("--system needs --chat (a system prompt belongs to a chat template)")
    config = generation_config(greedy, do_sample, temperature, top_k, top_p, seed, max_new_tokens, stop)
    loaded = _load(model, precision, chat)
    if chat:
        ids = encode_chat(loaded.tokenizer, loaded.chat_template, conversation(prompt, system))
    else:
        ids = loaded.tokenizer.encode(prompt, add_special=True)
    result = generate(loaded.model, loaded.tokenizer, ids, config, on_text=None if as_json else _stream)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    print()
    err.print(
        f"[dim]{result.prompt_tokens} prompt tokens, {len(result.token_ids)} new ({result.finish_reason}); "
        f"prefill {result.prefill_tokens_per_second:.0f} tok/s, decode {result.tokens_per_second:.1f} tok/s[/dim]"
    )


def chat_command(
    model: str = typer.Option("smollm2", "--model", "-m", help=MODEL_HELP),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sample with temperature T (default greedy)."),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", "-n", help="Most tokens per reply."),
    precision: str = typer.Option(FASTEST_PRECISION, "--precision", help=PRECISION_HELP),
) -> None:
    """Chat with a model in the terminal: replies stream; /reset forgets the conversation, /exit leaves."""
    from llmkit.generate.chat import conversation, trim_history
    from llmkit.generate.loop import generate

    config = generation_config(False, False, temperature, top_k, top_p, seed, max_new_tokens, [])
    loaded = _load(model, precision, need_chat=True)
    budget = loaded.spec.max_positions - max_new_tokens
    if budget <= 0:
        raise LlmkitError(f"--max-new-tokens {max_new_tokens} leaves no room in the {loaded.spec.max_positions}-token window")
    err.print(f"[dim]chatting with {loaded.path.name}; /reset forgets, /exit leaves[/dim]")
    history: list[dict] = []
    while True:
        try:
            user = input("> ").strip()
        except EOFError:
            break
        if user == "/exit":
            break
        if user == "/reset":
            history = []
            err.print("[dim]conversation forgotten[/dim]")
            continue
        if not user:
            continue
        try:
            messages, ids = trim_history(loaded.tokenizer, loaded.chat_template, conversation(user, system, history), budget)
        except LlmkitError as e:
            err.print(f"error: {e}")
            continue
        result = generate(loaded.model, loaded.tokenizer, ids, config, on_text=_stream)
        print()
        history = [m for m in messages if m["role"] != "system"] + [{"role": "assistant", "content": result.text}]


def register(app: typer.Typer) -> None:
    """Add ``generate`` and ``chat`` as top-level commands."""
    app.command("generate")(generate_command)
    app.command("chat")(chat_command)

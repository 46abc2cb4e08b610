"""``llmkit generate`` and ``llmkit chat``: parse, call llmkit.generate, print (streaming)."""

from __future__ import annotations

import json
import sys

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


SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "seed")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _early_stopping(value: str | None):
    if value is None:
        return None
    table = {"true": True, "false": False, "never": "never"}
    if value.lower() not in table:
        raise LlmkitError(f"--early-stopping must be true, false or never; got {value!r}")
    return table[value.lower()]


def preset_settings(name: str) -> dict:
    """The GenerationConfig settings of a sheet preset (llmkit.advise.PRESETS)."""
    from llmkit.advise import PRESETS

    if name not in PRESETS:
        raise LlmkitError(f"--preset must be one of {', '.join(PRESETS)}; got {name!r}")
    p = PRESETS[name]
    if not p.do_sample:
        return {"num_beams": p.num_beams, "no_repeat_ngram_size": p.no_repeat_ngram_size or None,
                    "length_penalty": p.length_penalty}
    return {"do_sample": True, "temperature": p.temperature, "top_p": p.top_p, "top_k": p.top_k or None}


def generation_config(
    greedy: bool, do_sample: bool, temperature: float | None, top_k: int | None, top_p: float | None,
    seed: int | None, max_new_tokens: int, stop: list[str], preset: str | None = None, **more,
):
    """The GenerationConfig the flags describe: a preset's settings, overridden by explicit flags; sampling when
    asked for or when any sampling flag is given (contrastive search when --penalty-alpha is)."""
    from llmkit.generate.config import GenerationConfig

    given = {k: v for k, v in dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, **more).items()
             if v is not None}
    sampling_flags = [_flag(k) for k in SAMPLING_FLAGS if k in given]
    if greedy and (do_sample or sampling_flags or preset):
        raise LlmkitError(f"--greedy cannot be combined with {', '.join(sampling_flags) or ('--preset' if preset else '--do-sample')}")
    settings = preset_settings(preset) if preset else {}
    settings.update(given)
    contrastive = given.get("penalty_alpha") is not None
    if do_sample or (sampling_flags and not contrastive and settings.get("num_beams", 1) == 1):
        settings["do_sample"] = True
    return GenerationConfig(max_new_tokens=max_new_tokens, stop=tuple(stop), **settings)


CACHE_KINDS = ("contiguous", "sliding", "paged", "int8")  # llmkit.generate.cache.CacheKind
CACHE_FLAG_KIND = {"--cache-window": "sliding", "--attention-sinks": "sliding", "--cache-block-size": "paged"}
CACHE_OPTIONS = {  # shared by generate and chat
    "cache": typer.Option("contiguous", "--cache", help="KV cache: contiguous, sliding (StreamingLLM window + "
                          "attention sinks), paged (vLLM blocks) or int8 (quantized K/V)."),
    "cache_window": typer.Option(None, "--cache-window", help="--cache sliding: tokens kept (default 1024)."),
    "attention_sinks": typer.Option(None, "--attention-sinks", help="--cache sliding: first tokens always kept (default 4)."),
    "cache_block_size": typer.Option(None, "--cache-block-size", help="--cache paged: tokens per block (default 16)."),
}


def cache_config(kind: str, window: int | None = None, sinks: int | None = None, block_size: int | None = None):
    """The CacheConfig the --cache flags describe; a size flag of another kind is an error, never ignored."""
    from llmkit.generate.cache import CacheConfig

    if kind not in CACHE_KINDS:
        raise LlmkitError(f"--cache must be one of {', '.join(CACHE_KINDS)}; got {kind!r}")
    given = {"--cache-window": window, "--attention-sinks": sinks, "--cache-block-size": block_size}
    for flag, value in given.items():
        if value is not None and CACHE_FLAG_KIND[flag] != kind:
            raise LlmkitError(f"{flag} is for --cache {CACHE_FLAG_KIND[flag]}; got --cache {kind}")
    sizes = {"window": window, "sinks": sinks, "block_size": block_size}
    return CacheConfig(kind, **{k: v for k, v in sizes.items() if v is not None})


def _stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _prompts(prompt: list[str], prompts_file: str | None) -> list[str]:
    texts = list(prompt)
    if prompts_file is not None:
        try:
            with open(prompts_file, encoding="utf-8") as f:
                texts += [line.rstrip("\n") for line in f if line.strip()]
        except OSError as e:
            raise LlmkitError(f"--prompts-file {prompts_file}: {e.strerror}") from None
    if not texts:
        raise LlmkitError("give a prompt: --prompt TEXT (repeatable) or --prompts-file FILE")
    return texts


def generate_command(
    prompt: list[str] = typer.Option([], "--prompt", "-p", help="The prompt text (repeat for a batch)."),
    prompts_file: str | None = typer.Option(None, "--prompts-file", help="A file with one prompt per line (a batch)."),
    model: str = typer.Option("smollm2", "--model", "-m", help=MODEL_HELP),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in the model's chat template."),
    system: str | None = typer.Option(None, "--system", help="System prompt (with --chat)."),
    preset: str | None = typer.Option(None, "--preset", help="factual, code, balanced, creative or translation "
                                         "(the sheet's settings; explicit flags override them)."),
    greedy: bool = typer.Option(False, "--greedy", help="Always take the most likely token (the default)."),
    do_sample: bool = typer.Option(False, "--do-sample", help="Sample instead of greedy decoding."),
    temperature: float | None = typer.Option(None, "--temperature", help="Sampling temperature T > 0."),
    top_k: int | None = typer.Option(None, "--top-k", help="Sample among the k most likely tokens (contrastive: k candidates)."),
    top_p: float | None = typer.Option(None, "--top-p", help="Sample from the smallest set with mass >= p."),
    min_p: float | None = typer.Option(None, "--min-p", help="Drop tokens below min_p x the top probability."),
    typical_p: float | None = typer.Option(None, "--typical-p", help="Locally typical sampling mass."),
    repetition_penalty: float | None = typer.Option(None, "--repetition-penalty", help="CTRL penalty (> 1 discourages repeats)."),
    no_repeat_ngram_size: int | None = typer.Option(None, "--no-repeat-ngram-size", help="Never repeat an n-gram of this size."),
    num_beams: int | None = typer.Option(None, "--num-beams", help="Beam search with this many beams."),
    length_penalty: float | None = typer.Option(None, "--length-penalty", help="Beam score = sum log p / length ** this."),
    early_stopping: str | None = typer.Option(None, "--early-stopping", help="Beam search: true, false or never."),
    num_return_sequences: int | None = typer.Option(None, "--num-return-sequences", help="Sequences returned (beams or samples)."),
    penalty_alpha: float | None = typer.Option(None, "--penalty-alpha", help="Contrastive search's degeneration penalty (with --top-k)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the sampling generator."),
    draft: str | None = typer.Option(None, "--draft", help="Speculative decoding draft: int8, int4, layers:N or a model path."),
    num_assistant_tokens: int | None = typer.Option(None, "--num-assistant-tokens", help="Tokens drafted per step (default 5)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", help="Most tokens to generate."),
    stop: list[str] = typer.Option([], "--stop", help="Stop when the text contains this string (repeatable)."),
    cache: str = CACHE_OPTIONS["cache"],
    cache_window: int | None = CACHE_OPTIONS["cache_window"],
    attention_sinks: int | None = CACHE_OPTIONS["attention_sinks"],
    cache_block_size: int | None = CACHE_OPTIONS["cache_block_size"],
    precision: str = typer.Option(FASTEST_PRECISION, "--precision", help=PRECISION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of streaming."),
) -> None:
    """Generate text from a prompt, streaming it token by token (greedy, sampling, beam, contrastive, speculative)."""
    from llmkit.generate.chat import conversation, encode_chat
    from llmkit.generate.loop import generate, generate_batch

    if system is not None and not chat:
        raise LlmkitError("--system needs --chat (a system prompt belongs to a chat template)")
    texts = _prompts(prompt, prompts_file)
    kv = cache_config(cache, cache_window, attention_sinks, cache_block_size)
    config = generation_config(
        greedy, do_sample, temperature, top_k, top_p, seed, max_new_tokens, stop, preset, min_p=min_p,
        typical_p=typical_p, repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
        num_beams=num_beams, length_penalty=length_penalty, early_stopping=_early_stopping(early_stopping),
        num_return_sequences=num_return_sequences, penalty_alpha=penalty_alpha,
        num_assistant_tokens=num_assistant_tokens,
    )
    if draft is not None:
        from llmkit.generate.speculative import draft_layers

        draft_layers(draft)  # a malformed layers:N fails before the model loads
        if config.strategy in ("beam", "contrastive") or len(texts) > 1:
            raise LlmkitError("--draft (speculative decoding) works with greedy or sampling on one prompt")
    loaded = _load(model, precision, chat)
    if chat:
        ids = [encode_chat(loaded.tokenizer, loaded.chat_template, conversation(t, system)) for t in texts]
    else:
        ids = [loaded.tokenizer.encode(t, add_special=True) for t in texts]
    if len(ids) > 1:
        if config.strategy not in ("greedy", "sample") or config.num_return_sequences > 1:
            raise LlmkitError("several prompts are batched with greedy or sampling only; give one prompt for "
                              "beam or contrastive search or several sequences")
        results = generate_batch(loaded.model, loaded.tokenizer, ids, config, kv)
        if as_json:
            print(json.dumps({"results": [r.to_json() for r in results]}, ensure_ascii=False))
        else:
            for text, r in zip(texts, results):
                print(f"--- {text}\n{r.text}")
        return
    draft_model = None
    if draft is not None:
        from llmkit.generate.speculative import make_draft

        with err.status(f"preparing the draft ({draft})…"):
            draft_model = make_draft(loaded.model, draft)
    streaming = not as_json and config.strategy != "beam" and config.num_return_sequences == 1
    result = generate(loaded.model, loaded.tokenizer, ids[0], config, on_text=_stream if streaming else None,
                      draft=draft_model, cache_config=kv)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    if not streaming:
        for i, s in enumerate(result.sequences):
            score = f" (score {s.score:.3f})" if s.score is not None else ""
            print(f"--- sequence {i + 1}{score}\n{s.text}" if len(result.sequences) > 1 else s.text, end="\n" if len(result.sequences) > 1 else "")
    print()
    err.print(
        f"[dim]{result.prompt_tokens} prompt tokens, {len(result.token_ids)} new ({result.finish_reason}); "
        f"prefill {result.prefill_tokens_per_second:.0f} tok/s, decode {result.tokens_per_second:.1f} tok/s[/dim]"
    )


def chat_command(
    model: str = typer.Option("smollm2", "--model", "-m", help=MODEL_HELP),
    system: str | None = typer.Option(None, "--system", help="System prompt."),
    temperature: float | None = typer.Option(None, "--temperature", help="Sample with temperature T (default greedy)."),
    top_k: int | None = typer.Option(None, "--top-k"),
    top_p: float | None = typer.Option(None, "--top-p"),
    seed: int | None = typer.Option(None, "--seed"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", "-n", help="Most tokens per reply."),
    cache: str = CACHE_OPTIONS["cache"],
    cache_window: int | None = CACHE_OPTIONS["cache_window"],
    attention_sinks: int | None = CACHE_OPTIONS["attention_sinks"],
    cache_block_size: int | None = CACHE_OPTIONS["cache_block_size"],
    precision: str = typer.Option(FASTEST_PRECISION, "--precision", help=PRECISION_HELP),
) -> None:
    """Chat with a model in the terminal: replies stream; /reset forgets the conversation, /exit leaves."""
    from llmkit.generate.chat import conversation, trim_history
    from llmkit.generate.loop import generate

    config = generation_config(False, False, temperature, top_k, top_p, seed, max_new_tokens, [])
    kv = cache_config(cache, cache_window, attention_sinks, cache_block_size)
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
        result = generate(loaded.model, loaded.tokenizer, ids, config, on_text=_stream, cache_config=kv)
        print()
        history = [m for m in messages if m["role"] != "system"] + [{"role": "assistant", "content": result.text}]


def register(app: typer.Typer) -> None:
    """Add ``generate`` and ``chat`` as top-level commands."""
    app.command("generate")(generate_command)
    app.command("chat")(chat_command)

"""``llmkit tokenize``: encode and decode text with a GGUF, tokenizer.json or vocab.txt tokenizer.

Thin: the tokenizer is ``llmkit.tokenize.load_tokenizer``; this module reads the input,
calls encode / decode, and prints a rich table, or JSON with ``--json`` / ``--jsonl``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer

from llmkit.errors import LlmkitError

app = typer.Typer(help="Encode, decode, train and measure tokenizers (BPE, WordPiece, Unigram, ByT5).", no_args_is_help=True)

TOKENIZER_HELP = "A .gguf file, a tokenizer.json, a vocab.txt, or a model name (smollm2, all-minilm-l6-v2)."


def _load(source: str):
    from llmkit.tokenize import load_tokenizer

    return load_tokenizer(source)


def _read_text(text: str | None, file: Path | None) -> str:
    if (text is None) == (file is None):
        raise LlmkitError("give the text to encode as an argument or with --file (one of them), or use --jsonl")
    if file is None:
        return text
    try:
        return file.read_text(encoding="utf-8")
    except OSError as e:
        raise LlmkitError(f"cannot read {file}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise LlmkitError(f"{file} is not UTF-8 text") from None


def _encoding_json(enc) -> dict:
    return {"ids": enc.ids, "tokens": enc.tokens, "offsets": [list(o) for o in enc.offsets]}


@app.command()
def encode(
    text: str | None = typer.Argument(None, help="Text to encode."),
    tokenizer: str = typer.Option("smollm2", "--tokenizer", "-t", help=TOKENIZER_HELP),
    file: Path | None = typer.Option(None, "--file", "-f", help="Encode the whole file as one text."),
    jsonl: Path | None = typer.Option(None, "--jsonl", help="One JSON string per line; one JSON object per line out."),
    no_special: bool = typer.Option(False, "--no-special", help="Leave out BOS/EOS/[CLS]/[SEP]."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: ids, tokens, offsets."),
) -> None:
    """Token ids, tokens and character offsets of a text."""
    tok = _load(tokenizer)
    if jsonl is not None:
        if text is not None or file is not None:
            raise LlmkitError("--jsonl takes its texts from the file; give no text argument or --file with it")
        for line in _jsonl_texts(jsonl):
            print(json.dumps(_encoding_json(tok.encode_with_offsets(line, not no_special)), ensure_ascii=False))
        return
    content = _read_text(text, file)
    enc = tok.encode_with_offsets(content, not no_special)
    if as_json:
        summary = {"n_tokens": len(enc.ids), "n_chars": len(content), "n_bytes": len(content.encode("utf-8"))}
        print(json.dumps({**_encoding_json(enc), **summary}, ensure_ascii=False))
        return
    _print_encoding(content, enc)


def _jsonl_texts(path: Path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise LlmkitError(f"cannot read {path}: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise LlmkitError(f"{path}:{n}: not JSON ({e.msg}); each line must be one JSON string") from None
        if not isinstance(value, str):
            raise LlmkitError(f"{path}:{n}: a {type(value).__name__}, not a JSON string")
        yield value


def _print_encoding(text: str, enc) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(enc.ids)} tokens", title_justify="left", header_style="bold")
    for name in ("#", "id", "token", "text", "span"):
        table.add_column(name, justify="right" if name in ("#", "id") else "left")
    for k, (i, token, (a, b)) in enumerate(zip(enc.ids, enc.tokens, enc.offsets)):
        table.add_row(str(k), str(i), repr(token), repr(text[a:b]) if b > a else "", f"{a}:{b}")
    console = Console()
    console.print(table)
    if enc.ids:
        console.print(f"[dim]{len(text) / len(enc.ids):.2f} characters per token, "
                      f"{len(text.encode('utf-8')) / len(enc.ids):.2f} bytes per token[/dim]")


@app.command()
def decode(
    ids: list[str] = typer.Argument(..., help="Token ids (spaces or commas between them)."),
    tokenizer: str = typer.Option("smollm2", "--tokenizer", "-t", help=TOKENIZER_HELP),
    skip_special: bool = typer.Option(False, "--skip-special", help="Leave special tokens out of the text."),
    as_json: bool = typer.Option(False, "--json", help='Print {"text": ...}.'),
) -> None:
    """The text of token ids."""
    try:
        numbers = [int(x) for arg in ids for x in arg.replace(",", " ").split()]
    except ValueError:
        raise LlmkitError(f"token ids must be integers, got {' '.join(ids)!r}") from None
    text = _load(tokenizer).decode(numbers, skip_special=skip_special)
    if as_json:
        print(json.dumps({"text": text, "n_tokens": len(numbers)}, ensure_ascii=False))
    else:
        sys.stdout.write(text + "\n")


@app.command()
def stats(
    files: list[Path] = typer.Argument(..., help="Text files (the corpus)."),
    tokenizer: str = typer.Option("smollm2", "--tokenizer", "-t", help=TOKENIZER_HELP),
    price_per_1k: float | None = typer.Option(None, "--price-per-1k", help="Price per 1K tokens, for the cost line."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Characters, bytes and words per token on a corpus, against the sheet's rules of thumb."""
    from llmkit.tokenize.stats import (
        SHEET_CHARS_PER_TOKEN_ENGLISH,
        SHEET_TOKENS_PER_WORD_ENGLISH,
        token_stats,
    )

    result = token_stats(_load(tokenizer), (_read_text(None, f) for f in files))
    row = {"n_chars": result.n_chars, "n_bytes": result.n_bytes, "n_words": result.n_words, "n_tokens": result.n_tokens,
           "chars_per_token": result.chars_per_token, "bytes_per_token": result.bytes_per_token,
           "tokens_per_word": result.tokens_per_word}  # fmt: skip
    if price_per_1k is not None:
        row["cost"] = result.cost(price_per_1k)
    if as_json:
        print(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.n_tokens:,} tokens", title_justify="left", header_style="bold")
    for name in ("measure", "this corpus", "sheet (English, GPT-4)"):
        table.add_column(name, justify="left" if name == "measure" else "right")
    table.add_row("characters per token", f"{result.chars_per_token:.2f}", f"~{SHEET_CHARS_PER_TOKEN_ENGLISH:g}")
    table.add_row("tokens per word", f"{result.tokens_per_word:.2f}", f"~{SHEET_TOKENS_PER_WORD_ENGLISH:g}")
    table.add_row("bytes per token", f"{result.bytes_per_token:.2f}", "")
    if price_per_1k is not None:
        table.add_row(f"cost at {price_per_1k:g} per 1K tokens", f"{result.cost(price_per_1k):,.4f}", "")
    Console().print(table)


@app.command()
def train(
    files: list[Path] = typer.Argument(..., help="Corpus text files."),
    output: Path = typer.Option(Path("tokenizer.json"), "--output", "-o", help="Where to write the tokenizer.json."),
    model: str = typer.Option("bpe", "--model", "-m", help="bpe (byte-level, as HF BpeTrainer), wordpiece, or unigram (as sentencepiece)."),
    vocab_size: int = typer.Option(8000, "--vocab-size", help="Vocabulary size, special tokens (and the 256 bytes of BPE) included."),
    min_frequency: int = typer.Option(0, "--min-frequency", help="BPE: stop when the best pair occurs fewer times."),
    special: list[str] = typer.Option([], "--special-token", help="A special token (repeat the option for more)."),
    pretokenizer: str = typer.Option("gpt2", "--pretokenizer", help="BPE: gpt2, gpt2-digits (smollm), llama3 or qwen2."),
    wordpiece: bool = typer.Option(False, "--wordpiece", help="Same as --model wordpiece."),
    byte_fallback: bool = typer.Option(False, "--byte-fallback", help="Unigram: add the 256 <0xXX> byte pieces."),
) -> None:
    """Train a tokenizer on text files and save it as tokenizer.json (BPE, WordPiece or Unigram)."""
    import time

    from rich.progress import Progress

    from llmkit.tokenize import save_tokenizer_json

    kind = "wordpiece" if wordpiece else model.lower()
    if kind not in ("bpe", "wordpiece", "unigram"):
        raise LlmkitError(f"--model {model!r}: use bpe, wordpiece or unigram")
    texts = [_read_text(None, f) for f in files]
    start = time.perf_counter()
    if kind == "wordpiece":
        from llmkit.tokenize.train_bpe import train_wordpiece

        tok = train_wordpiece(texts, vocab_size, tuple(special) or ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), min_frequency)
        detail = "WordPiece"
    elif kind == "unigram":
        tok = _train_unigram(texts, vocab_size, tuple(special), byte_fallback)
        detail = "Unigram"
    else:
        from llmkit.tokenize.train_bpe import BpeTrainerConfig, train_byte_level_bpe

        config = BpeTrainerConfig(vocab_size, min_frequency, tuple(special), True, pretokenizer)
        with Progress() as progress:
            task = progress.add_task("merges", total=vocab_size)
            tok = train_byte_level_bpe(texts, config, progress=lambda n: progress.update(task, completed=n))
            progress.update(task, completed=vocab_size)
        detail = f"{len(tok.model.merges)} merges"
    save_tokenizer_json(tok, output)
    print(f"wrote {output}: {tok.vocab_size} tokens ({detail}), trained in {time.perf_counter() - start:.1f} s")


def _train_unigram(texts: list[str], vocab_size: int, special: tuple[str, ...], byte_fallback: bool):
    """Sentences are the corpus lines; the bar follows the piece count down from the seed size to the target."""
    from rich.progress import Progress

    from llmkit.tokenize.train_unigram import UnigramTrainerConfig, train_unigram

    specials = ("<unk>", "<s>", "</s>") + tuple(t for t in special if t not in ("<unk>", "<s>", "</s>"))
    config = UnigramTrainerConfig(vocab_size, special_tokens=specials, byte_fallback=byte_fallback)
    lines = [line for text in texts for line in text.splitlines()]
    with Progress() as progress:
        task = progress.add_task("EM + pruning", total=None)
        seen: list[int] = []

        def update(n_pieces: int) -> None:
            seen.append(n_pieces)
            goal = int(vocab_size * 1.1)
            done = math.log(seen[0] / max(n_pieces, goal)) / math.log(seen[0] / goal) if seen[0] > goal else 1.0
            progress.update(task, total=100, completed=100 * done, description=f"EM + pruning: {n_pieces:,} pieces")

        tok = train_unigram(lines, config, progress=update)
        progress.update(task, total=100, completed=100)
    return tok

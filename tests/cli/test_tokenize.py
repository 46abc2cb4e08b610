"""`llmkit tokenize`: encode / decode print what the library computes; bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest

from llmkit.cli.main import main


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    hf.no_truncation()
    hf.no_padding()
    return hf


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from llmkit.tokenize import load_tokenizer

    return load_tokenizer("smollm2")


def test_encode_json_equals_hf_wordpiece(capsys, hf_minilm):
    text = "Héllo, wörld! 中文 unaffable"
    code, out, _ = run(["tokenize", "encode", "--tokenizer", "all-minilm-l6-v2", "--json", text], capsys)
    data, hf = json.loads(out), hf_minilm.encode(text)
    assert code == 0
    assert (data["ids"], data["tokens"], [tuple(o) for o in data["offsets"]]) == (hf.ids, hf.tokens, hf.offsets)
    assert data["n_tokens"] == len(hf.ids) and data["n_chars"] == len(text)


def test_no_special_leaves_out_cls_and_sep(capsys, hf_minilm):
    _, out, _ = run(["tokenize", "encode", "-t", "minilm", "--no-special", "--json", "hello world"], capsys)
    assert json.loads(out)["ids"] == hf_minilm.encode("hello world", add_special_tokens=False).ids


def test_encode_file_and_gguf_path(capsys, tmp_path, smollm2_gguf, smollm2_tokenizer):
    text = "def f(x):\n    return x  # <|im_end|> 日本\n"
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    code, out, _ = run(["tokenize", "encode", "-t", str(smollm2_gguf), "--file", str(tmp_path / "in.txt"), "--json"], capsys)
    assert code == 0 and json.loads(out)["ids"] == smollm2_tokenizer.encode(text)


def test_jsonl_prints_one_object_per_line(capsys, tmp_path, hf_minilm):
    texts = ["first line", "Zweite Zeile, ÄÖÜ", "三行目"]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(t, ensure_ascii=False) for t in texts) + "\n", encoding="utf-8")
    code, out, _ = run(["tokenize", "encode", "-t", "minilm", "--jsonl", str(tmp_path / "in.jsonl")], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["ids"] for r in rows] == [hf_minilm.encode(t).ids for t in texts]
    assert set(rows[0]) == {"ids", "tokens", "offsets"}


def test_human_output_is_a_table(capsys):
    code, out, _ = run(["tokenize", "encode", "Hello world"], capsys)
    assert code == 0 and "Ġworld" in out and "2 tokens" in out and "characters per token" in out


def test_decode(capsys, smollm2_tokenizer):
    ids = smollm2_tokenizer.encode("<|im_start|>Hi 日本<|im_end|>")
    _, out, _ = run(["tokenize", "decode", *map(str, ids)], capsys)
    assert out == "<|im_start|>Hi 日本<|im_end|>\n"
    _, out, _ = run(["tokenize", "decode", "--skip-special", "--json", ",".join(map(str, ids))], capsys)
    assert json.loads(out)["text"] == "Hi 日本"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode", "-t", "no-such-model", "x"], "no-such-model: no such file or model"),
        (["encode", "-t", "minilm"], "give the text to encode"),
        (["decode", "1", "x2"], "token ids must be integers"),
        (["decode", "99999999"], "token id 99999999 is out of range"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    code, _, err = run(["tokenize", *args], capsys)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bad_jsonl_line_is_named(capsys, tmp_path):
    (tmp_path / "in.jsonl").write_text('"ok"\n{"text": 1}\n')
    code, _, err = run(["tokenize", "encode", "-t", "minilm", "--jsonl", str(tmp_path / "in.jsonl")], capsys)
    assert code == 2 and "in.jsonl:2: a dict, not a JSON string" in err


def test_stats_json(capsys, tmp_path, hf_minilm):
    text = "The quick brown fox jumps over the lazy dog. " * 20
    (tmp_path / "a.txt").write_text(text)
    code, out, _ = run(["tokenize", "stats", "-t", "minilm", str(tmp_path / "a.txt"), "--price-per-1k", "2", "--json"], capsys)
    data = json.loads(out)
    n = len(hf_minilm.encode(text, add_special_tokens=False).ids)
    assert code == 0 and data["n_tokens"] == n and data["cost"] == n / 1000 * 2
    assert data["tokens_per_word"] == n / len(text.split())


def test_train_writes_a_tokenizer_json_hf_loads(capsys, tmp_path):
    from tokenizers import Tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("low lower newest widest " * 50 + "the theme then there these", encoding="utf-8")
    out_path = tmp_path / "tok.json"
    code, out, _ = run(["tokenize", "train", str(corpus), "-o", str(out_path), "--vocab-size", "270",
                        "--special-token", "<eos>"], capsys)
    assert code == 0 and "270 tokens" in out
    hf = Tokenizer.from_file(str(out_path))
    _, out, _ = run(["tokenize", "encode", "-t", str(out_path), "--json", "the newest<eos>"], capsys)
    assert json.loads(out)["ids"] == hf.encode("the newest<eos>").ids


def test_train_wordpiece(capsys, tmp_path):
    from tokenizers import Tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog. " * 30 + "Unaffable affable", encoding="utf-8")
    out_path = tmp_path / "wp.json"
    code, out, _ = run(["tokenize", "train", str(corpus), "-o", str(out_path), "--vocab-size", "120", "--wordpiece"], capsys)
    assert code == 0 and "(WordPiece)" in out
    text = "the lazy fox, unaffable"
    _, out, _ = run(["tokenize", "encode", "-t", str(out_path), "--json", text], capsys)
    assert json.loads(out)["ids"] == Tokenizer.from_file(str(out_path)).encode(text).ids


def test_train_unigram_reports_time_and_loads_in_hf(capsys, tmp_path):
    from tokenizers import Tokenizer

    from tests.tokenize.tokenizer_corpus import english

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english(60_000), encoding="utf-8")
    out_path = tmp_path / "uni.json"
    code, out, _ = run(["tokenize", "train", str(corpus), "-o", str(out_path), "--model", "unigram", "--vocab-size", "500"], capsys)
    assert code == 0 and "500 tokens (Unigram), trained in" in out
    text = "Cannot open the file: permission denied"
    _, out, _ = run(["tokenize", "encode", "-t", str(out_path), "--json", "--no-special", text], capsys)
    assert json.loads(out)["ids"] == Tokenizer.from_file(str(out_path)).encode(text).ids


def test_train_unknown_model_is_a_clear_error(capsys, tmp_path):
    (tmp_path / "c.txt").write_text("abc")
    code, _, err = run(["tokenize", "train", str(tmp_path / "c.txt"), "--model", "wordlevel"], capsys)
    assert code == 2 and "use bpe, wordpiece or unigram" in err

"""`llmkit advise`: each decision prints its choice with reasons; JSON carries the same Advice."""

import json

import pytest

from llmkit import zoo
from llmkit.advise import FinetuneQuestion, finetune_method
from llmkit.cli.main import main


def run(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_finetune_json_matches_library(capsys):
    code, out, _ = run(["advise", "finetune", "--model", "llama-2-7b", "--examples", "5000", "--memory-gb", "24",
                        "--json"], capsys)
    data = json.loads(out)
    lib = finetune_method(zoo.get("llama-2-7b"), FinetuneQuestion(5000, 24 * 10**9))
    assert code == 0 and data["choice"] == lib.choice and data["reasons"] == list(lib.reasons)


def test_quantize_small_budget_picks_4bit(capsys):
    code, out, _ = run(["advise", "quantize", "--model", "llama-3-8b", "--target", "consumer-gpu",
                        "--memory-gb", "8", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and "4-bit" in data["choice"] and any("bf16 does not fit" in r for r in data["reasons"])


def test_decode_and_rag(capsys):
    _, out, _ = run(["advise", "decode", "translation", "--json"], capsys)
    assert json.loads(out)["choice"] == "translation"
    _, out, _ = run(["advise", "rag", "--dynamic", "--citations", "--json"], capsys)
    assert json.loads(out)["choice"] == "rag"


@pytest.mark.parametrize("args", [["advise", "decode", "poetry-slam"],
                                  ["advise", "finetune", "--model", "gpt2", "--examples", "10", "--memory-gb", "-1"],
                                  ["advise", "quantize", "--model", "gpt2", "--target", "toaster"]])
def test_bad_input_one_line(args, capsys):
    code, _, err = run(args, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")

"""`llmkit advise`: each decision prints its choice with reasons; JSON carries the same Advice."""

import json

import pytest

from llmkit import zoo
from llmkit.advise import FinetuneQuestion, finetune_method




def test_finetune_json_matches_library(cli):
    code, out, _ = cli(["advise", "finetune", "--model", "llama-2-7b", "--examples", "5000", "--memory-gb", "24",
                        "--json"])
    data = json.loads(out)
    lib = finetune_method(zoo.get("llama-2-7b"), FinetuneQuestion(5000, 24 * 10**9))
    assert code == 0 and data["choice"] == lib.choice and data["reasons"] == list(lib.reasons)


def test_quantize_small_budget_picks_4bit(cli):
    code, out, _ = cli(["advise", "quantize", "--model", "llama-3-8b", "--target", "consumer-gpu",
                        "--memory-gb", "8", "--json"])
    data = json.loads(out)
    assert code == 0 and "4-bit" in data["choice"] and any("bf16 does not fit" in r for r in data["reasons"])


def test_decode_and_rag(cli):
    _, out, _ = cli(["advise", "decode", "translation", "--json"])
    assert json.loads(out)["choice"] == "translation"
    _, out, _ = cli(["advise", "rag", "--dynamic", "--citations", "--json"])
    assert json.loads(out)["choice"] == "rag"


@pytest.mark.parametrize("args", [["advise", "decode", "poetry-slam"],
                                  ["advise", "finetune", "--model", "gpt2", "--examples", "10", "--memory-gb", "-1"],
                                  ["advise", "quantize", "--model", "gpt2", "--target", "toaster"]])
def test_bad_input_one_line(cli, args):
    code, _, err = cli(args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")

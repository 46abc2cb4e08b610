"""llmkit.advise: the sheet's decision matrices, with the memory checks from the calculator."""

from __future__ import annotations

import pytest

from llmkit import zoo
from llmkit.advise import (
    PRESETS,
    FinetuneQuestion,
    RagQuestion,
    decoding_preset,
    finetune_method,
    quantization,
    rag_or_finetune,
)
from llmkit.calc.memory import GB
from llmkit.errors import LlmkitError


@pytest.fixture(scope="module")
def llama():
    return zoo.get("llama-2-7b")


def test_finetune_method_follows_section_7(llama):
    assert finetune_method(llama, FinetuneQuestion(examples=50, memory_bytes=24 * GB)).choice == "in-context"
    assert finetune_method(llama, FinetuneQuestion(examples=5_000, memory_bytes=24 * GB)).choice == "lora"
    assert finetune_method(llama, FinetuneQuestion(examples=5_000, memory_bytes=10 * GB)).choice == "qlora"
    big = finetune_method(llama, FinetuneQuestion(examples=500_000, memory_bytes=80 * GB))
    assert big.choice == "lora" and any("full does not fit" in r for r in big.reasons)
    assert finetune_method(llama, FinetuneQuestion(examples=500_000, memory_bytes=640 * GB)).choice == "full"
    assert finetune_method(llama, FinetuneQuestion(examples=500, memory_bytes=2 * GB)).choice == "none"
    assert finetune_method(llama, FinetuneQuestion(examples=5_000, memory_bytes=80 * GB, goal="alignment")).choice == "dpo"


def test_quantization_follows_section_8(llama):
    assert quantization(llama, "cloud-gpu").choice == "bf16"
    assert quantization(llama, "cpu").choice == "gguf q4_k_m"
    assert quantization(llama, "cpu", memory_bytes=16 * 2**30).choice == "gguf q8_0"
    assert quantization(llama, "cpu", memory_bytes=8 * 2**30).choice == "gguf q4_k_m"  # 6.5 GB with a 4K fp16 KV cache
    assert quantization(llama, "consumer-gpu", memory_bytes=12 * 2**30).choice == "int8"
    with pytest.raises(LlmkitError, match="target"):
        quantization(llama, "toaster")


def test_decoding_presets_are_the_sheets_values():
    assert (PRESETS["balanced"].temperature, PRESETS["balanced"].top_p, PRESETS["balanced"].top_k) == (0.7, 0.9, 50)
    assert PRESETS["creative"].temperature_range == (0.9, 1.2) and PRESETS["creative"].top_k == 100
    beam = decoding_preset("translation")
    assert beam.choice == "translation" and beam.details["preset"].num_beams_range == (4, 8)
    assert decoding_preset("code").details["preset"].temperature_range == (0.0, 0.2)


def test_rag_or_finetune_follows_section_13():
    assert rag_or_finetune(RagQuestion(knowledge_changes=True, needs_citations=True)).choice == "rag"
    assert rag_or_finetune(RagQuestion(style_or_format_change=True, examples=50_000)).choice == "fine-tune"
    assert rag_or_finetune(RagQuestion(knowledge_changes=True, style_or_format_change=True)).choice == "both"

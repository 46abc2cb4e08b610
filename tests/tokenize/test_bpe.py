"""BPE merges: a hand-worked example, the heap path equal to the list path, and bad merge tables."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit import kernels
from llmkit.tokenize.bpe import ByteLevelBPE, bpe_merge, bpe_merge_heap, merge_table
from llmkit.tokenize.errors import TokenizerError

# A toy vocabulary: the letters, then the tokens the merges below create, in order.
TOKENS = ["l", "o", "w", "e", "r", "a", "er", "lo", "low", "lower", "aa", "aaa"]
MERGES = [("e", "r"), ("l", "o"), ("lo", "w"), ("low", "er"), ("a", "a"), ("aa", "a")]


def _ids(s: str) -> list[int]:
    return [TOKENS.index(c) for c in s]


def test_hand_worked_example():
    """l o w e r -> l o w er (rank 0) -> lo w er (1) -> low er (2) -> lower (3)."""
    table = merge_table({t: i for i, t in enumerate(TOKENS)}, MERGES)
    ranks, merged = table.ranks, table.merged
    assert bpe_merge(_ids("lower"), ranks, merged) == [TOKENS.index("lower")]
    assert bpe_merge(_ids("rewol"), ranks, merged) == _ids("rewol")  # no pair is a merge


def test_equal_ranks_merge_leftmost_first():
    """a a a a a -> aa a a a (rank 4 at 0) -> aa aa a (rank 4, now leftmost at 1) -> aa aaa (rank 5)."""
    table = merge_table({t: i for i, t in enumerate(TOKENS)}, MERGES)
    ranks, merged = table.ranks, table.merged
    assert [TOKENS[i] for i in bpe_merge(_ids("aaaaa"), ranks, merged)] == ["aa", "aaa"]
    assert [TOKENS[i] for i in bpe_merge(_ids("aaa"), ranks, merged)] == ["aaa"]


@settings(max_examples=400, deadline=None)
@given(st.text(st.sampled_from("lowera"), max_size=200))
def test_heap_merge_equals_list_merge_equals_hf(hf_toy_bpe, word):
    table = merge_table({t: i for i, t in enumerate(TOKENS)}, MERGES)
    ids = bpe_merge(_ids(word), table.ranks, table.merged)
    assert bpe_merge_heap(_ids(word), table.ranks, table.merged) == ids
    assert kernels.BPEMerger(table).merge(_ids(word)) == ids  # the C merger
    assert ids == (hf_toy_bpe.encode(word).ids if word else [])


@pytest.fixture(scope="module")
def hf_toy_bpe():
    """HF tokenizers' BPE model on the toy vocabulary, the whole input as one word."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    return Tokenizer(BPE({t: i for i, t in enumerate(TOKENS)}, MERGES))


def test_heap_and_list_agree_on_the_real_vocabulary(smollm2, real_text):
    model = smollm2.model
    words = sorted(set(real_text["english"].split()), key=len)[-300:] + ["a" * 500, "ab" * 300, "日本" * 100]
    for w in words:
        ids = [i for i in (model.byte_ids[b] for b in w.encode()) if i >= 0]
        expected = bpe_merge(list(ids), model.ranks, model.merged)
        assert bpe_merge_heap(list(ids), model.ranks, model.merged) == expected
        assert model.merger.merge(list(ids)) == expected  # the C merger ByteLevelBPE uses


def test_merge_with_unknown_token_is_rejected():
    with pytest.raises(TokenizerError, match="merge 1 .*'q'.* not in the vocabulary"):
        ByteLevelBPE(["a", "b", "ab"], [("a", "b"), ("a", "q")])


# -- character-level BPE with byte fallback (SentencePiece BPE, LLaMA-2's tokenizer.json shape) --


@pytest.fixture(scope="module")
def llama2_style_json(real_text, tmp_path_factory):
    """A char-level BPE trained by HF on real text, with <0xXX> byte tokens and LLaMA-2's pipeline."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    hf.train_from_iterator([real_text["english"][:200_000], real_text["accented-latin"][:50_000]], trainer=trainer)
    data = json.loads(hf.to_str())
    vocab = data["model"]["vocab"]
    vocab |= {f"<0x{b:02X}>": len(vocab) + b for b in range(256)}
    data["model"].update(byte_fallback=True, unk_token="<unk>", fuse_unk=True)
    space = {"String": " "}
    data |= {
        "pre_tokenizer": None,
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": space, "content": "\u2581"}]},
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                     {"type": "ByteFallback"}, {"type": "Fuse"},
                                                     {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                    {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    }  # fmt: skip
    path = tmp_path_factory.mktemp("llama2") / "tokenizer.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("family", ["english", "code", "cjk", "cyrillic", "emoji"])
def test_char_bpe_with_byte_fallback_equals_hf(llama2_style_json, real_text, family):
    from tokenizers import Tokenizer

    from llmkit.tokenize.tokenizer_json import load_tokenizer_json

    hf, ours = Tokenizer.from_file(str(llama2_style_json)), load_tokenizer_json(llama2_style_json)
    for text in (real_text[family][:30_000], "  Hi  日本 </s>x", "<s>a</s> b", "naïve ǅ 👍 \x00", ""):
        enc, theirs = ours.encode_with_offsets(text), hf.encode(text)
        assert (enc.ids, enc.offsets) == (theirs.ids, theirs.offsets)
        assert ours.decode(enc.ids) == hf.decode(theirs.ids, skip_special_tokens=False)
        assert ours.decode(enc.ids, skip_special=True) == hf.decode(theirs.ids)


def test_char_bpe_saved_loads_in_hf(llama2_style_json, real_text, tmp_path):
    from tokenizers import Tokenizer

    from llmkit.tokenize.tokenizer_json import load_tokenizer_json, save_tokenizer_json

    save_tokenizer_json(load_tokenizer_json(llama2_style_json), tmp_path / "again.json")
    hf = Tokenizer.from_file(str(tmp_path / "again.json"))
    text = real_text["accented-latin"][:20_000] + " 日本 👍"
    ids = load_tokenizer_json(llama2_style_json).encode(text)
    assert hf.encode(text, add_special_tokens=False).ids == ids[1:] and ids[0] == 1
    assert hf.decode(ids[1:]) == text


def test_merge_table_keeps_ids_and_gives_the_merges_back():
    """The merges are held as int32 ids (no strings kept); ``merges`` spells them again, rank order."""
    model = ByteLevelBPE(TOKENS, MERGES)
    assert model.merges == MERGES
    assert len(model.table) == len(MERGES) and model.table.left.itemsize == 4
    assert model.ranks == {(TOKENS.index(a), TOKENS.index(b)): r for r, (a, b) in enumerate(MERGES)}


def test_a_pair_listed_twice_keeps_its_last_rank_in_python_and_in_c():
    tokens = ["a", "b", "c", "ab", "bc"]
    merges = [("a", "b"), ("b", "c"), ("a", "b")]  # "a b" at ranks 0 and 2
    table = merge_table({t: i for i, t in enumerate(tokens)}, merges)
    assert table.ranks[(0, 1)] == 2
    expected = bpe_merge([0, 1, 2], table.ranks, table.merged)
    assert [tokens[i] for i in expected] == ["a", "bc"]  # with rank 2, "b c" (rank 1) goes first
    assert kernels.BPEMerger(table).merge([0, 1, 2]) == expected

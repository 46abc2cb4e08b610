"""Sentence embeddings of the real all-MiniLM-L6-v2 against transformers' AutoModel with the same pooling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer as HFTokenizer
from transformers import AutoModel

from llmkit.embed import EmbedConfig, mean_pool, sentence_embeddings
from llmkit.errors import LlmkitError
from llmkit.load import load
from llmkit.nn import Transformer
from llmkit.spec import ModelSpec

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "She baked a chocolate cake for her grandmother's birthday.",
    "The train to Edinburgh was delayed by forty minutes this morning.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "He forgot his umbrella and got soaked walking home.",
    "The committee will meet again next Thursday to finalise the budget.",
    "Children were building sandcastles along the shore.",
    "My laptop battery drains much faster since the last update.",
    "The museum's new exhibition features paintings from the Dutch Golden Age.",
    "Please remember to water the tomatoes while I'm away.",
    "A sudden storm forced the fishing boats back into the harbour.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Researchers discovered a new species of frog in the rainforest.",
    "Traffic on the motorway was backed up for several miles.",
    "I can't believe how quickly the summer went by!",
    "The orchestra tuned their instruments before the concert began.",
    "Vaccines train the immune system to recognise specific pathogens.",
    "The old lighthouse has stood on that cliff for over a century.",
    "Can you recommend a good book about the history of mathematics?",
    "The football match ended in a goalless draw.",
    "Our neighbours adopted a rescue dog named Biscuit.",
    "Solar panels were installed on the roof of the school last year.",
    "The detective examined the footprints near the broken window.",
    "Learning a second language improves memory and concentration.",
    "The bakery on Main Street sells the best croissants in town.",
    "Volcanic ash grounded flights across northern Europe.",
    "He practises the piano for an hour every evening.",
    "The software engineer fixed the bug before the release deadline.",
    "A flock of geese flew south over the frozen lake.",
    "The restaurant was closed for renovations until spring.",
    "Quantum computers exploit superposition to explore many states at once.",
    "She wrote a heartfelt letter to her childhood friend.",
    "The hikers reached the summit just before sunset.",
    "Inflation has made groceries noticeably more expensive this year.",
    "The cat knocked a glass of water off the kitchen table.",
    "Electric cars are becoming more affordable every year.",
    "The library extended its opening hours during exam season.",
    "A gentle breeze rustled the leaves of the old oak tree.",
    "The doctor advised him to get more sleep and drink less coffee.",
    "Thousands of fans queued overnight for concert tickets.",
    "The bridge was closed after engineers found cracks in its supports.",
    "My sister is studying marine biology at university.",
    "The chess grandmaster sacrificed her queen to win the game.",
    "Fresh snow covered the mountain village overnight.",
    "The company announced record profits for the third quarter.",
    "He repaired the bicycle's puncture with a patch kit.",
    "What time does the pharmacy close on Sundays?",
    "Astronomers observed a distant galaxy colliding with its neighbour.",
]


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return load(minilm_dir)


def test_fifty_real_sentences_match_transformers(minilm, minilm_dir):
    assert len(SENTENCES) == 50 and len(set(SENTENCES)) == 50
    ours = sentence_embeddings(minilm.model, minilm.tokenizer, SENTENCES, EmbedConfig(batch_size=16))

    hf_tok = HFTokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    hf_tok.no_padding()
    hf = AutoModel.from_pretrained(minilm_dir).eval()
    rows = [e.ids for e in hf_tok.encode_batch(SENTENCES)]
    longest = max(map(len, rows))
    ids = torch.tensor([r + [0] * (longest - len(r)) for r in rows])
    mask = (torch.arange(longest)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    with torch.no_grad():
        hidden = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask[..., None].float()
    theirs = F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)

    assert ours.shape == (50, 384)
    cosine = (ours * theirs).sum(-1)
    print(f"min cosine {cosine.min().item():.8f}")
    assert cosine.min() >= 0.99999
    assert torch.allclose(ours.norm(dim=-1), torch.ones(50), atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones(minilm):
    a, b, c = sentence_embeddings(minilm.model, minilm.tokenizer, [
        "A man is playing a guitar.", "Someone is strumming a guitar.", "The stock market crashed today."])
    assert a @ b > a @ c + 0.3


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.equal(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_decoders_cannot_embed(minilm):
    spec = ModelSpec(name="tiny", family="decoder", d_model=32, n_layers=1, n_heads=4, vocab_size=64, d_ff=64,
                     position="rope", norm="rmsnorm", ffn_kind="swiglu", activation="silu")
    with pytest.raises(LlmkitError, match="need an encoder"):
        sentence_embeddings(Transformer(spec), minilm.tokenizer, ["hello"])

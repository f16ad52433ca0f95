"""Tiny stand-ins for the smoke preset: a random Llama with a word-level tokenizer and a
sentiment file it can learn. Suites name them `fixture:tiny-llama` and `fixture:sentiment`;
they are written once under the suite's output folder, so the smoke preset needs no
downloaded weights and no data folder.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

PREFIX = "fixture:"
_POS, _NEG = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
_WORDS = _POS + _NEG + "the movie film plot was . neg pos".split()


def _tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1}
    for w in _WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[PAD]")


def _tiny_llama(folder: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):  # a fixed model without touching the caller's RNG
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    _tokenizer().save_pretrained(folder)


def _sentiment(path: Path, n: int = 96) -> None:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        label = i % 2
        rows.append(f"the {rng.choice(['movie', 'film', 'plot'])} was {rng.choice(_POS if label else _NEG)} ."
                    f"\t{['neg', 'pos'][label]}")
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n")


_MAKERS = {"tiny-llama": ("tiny-llama", _tiny_llama), "sentiment": ("sentiment.tsv", _sentiment)}


def resolve(name: str, root: Path) -> str:
    """The path of fixture `name` (written under root/fixtures on first use); other names pass through."""
    if not name.startswith(PREFIX):
        return name
    key = name[len(PREFIX):]
    if key not in _MAKERS:
        raise ValueError(f"unknown fixture {name!r}; known: {', '.join(PREFIX + k for k in _MAKERS)}")
    filename, make = _MAKERS[key]
    path = root / "fixtures" / filename
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    return str(path)

"""Model resolution: short names, local folders, clear errors (no hub, no shipped weights needed)."""

import pytest
import torch

from zoo.models import ModelError, load_causal_lm, local_folder
from conftest import tiny_llama


def test_unknown_name_lists_short_names():
    with pytest.raises(ModelError, match="smollm2-135m"):
        local_folder("gpt-17")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        local_folder(str(tmp_path))


def test_local_folder_roundtrip(tmp_path):
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    model = tiny_llama()
    model.save_pretrained(tmp_path)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")),
                                  eos_token="[UNK]")
    tok.save_pretrained(tmp_path)
    loaded, ltok = load_causal_lm(str(tmp_path), attn_implementation="eager")
    assert ltok.pad_token is not None
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert torch.equal(a, b)

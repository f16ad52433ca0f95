"""Model resolution: short names, local folders, clear errors (no hub, no shipped weights needed)."""

import pytest
import torch

from zoo.models import ModelError, _publish, load_causal_lm, local_folder
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


def _converted(folder, marker):
    folder.mkdir()
    (folder / "config.json").write_text(marker)
    return folder


def test_a_conversion_moves_into_an_empty_cache(tmp_path):
    target = tmp_path / "m"
    _publish(_converted(tmp_path / "mine", "mine"), target)
    assert (target / "config.json").read_text() == "mine"


def test_a_second_job_converting_at_once_keeps_the_first_cache(tmp_path):
    # two jobs started together both convert; the one that finishes second must not crash
    target = _converted(tmp_path / "m", "first")
    (target / "weights").write_text("x")
    _publish(_converted(tmp_path / "mine", "second"), target)
    assert (target / "config.json").read_text() == "first"


def test_an_interrupted_cache_without_config_is_replaced(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "half.safetensors").write_text("x")
    _publish(_converted(tmp_path / "mine", "mine"), target)
    assert (target / "config.json").read_text() == "mine"
    assert not (target / "half.safetensors").exists()

"""`--dtype` and `--device`: half-precision runs, what stays float32, old results, and device errors."""

import json

import pytest
import torch

from zoo.cli import main
from zoo.finetune.build import prepare
from zoo.finetune.heads import PooledClassifier
from zoo.finetune.loop import FinetuneConfig, finetune
from zoo.finetune.scoring import EXACT_SWEEP_TOKENS
from zoo.placement import checked_device, dtype_of
from zoo.tasks import few_shot, user_task
from conftest import WORDS, bits_equal, sentiment_file, tiny_llama, tiny_model_folder, word_tokenizer


def _finetune_cli(folder, data, out, *extra):
    return main(["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "6",
                 "--batch-size", "4", "--out", str(out), *extra])


@pytest.mark.parametrize("tuning", ["full", "lora", "prefix"])
def test_a_bfloat16_run_trains_what_it_should_in_the_dtype_it_should_and_replays_exactly(tmp_path, tuning):
    folder, data = tiny_model_folder(tmp_path)
    out = tmp_path / "run"
    assert _finetune_cli(folder, data, out, "--tuning", tuning, "--lr", "0.5", "--dtype", "bfloat16") == 0
    r = json.loads((out / "results.json").read_text())
    assert r["config"]["dtype"] == "bfloat16" and r["config"]["device"] == "cpu"
    assert r["config"]["estimator_options"] == {}
    # the estimator's default: exact where the trained weights are bfloat16, in place for float32 adapters
    assert r["perturbation"] == ("exact" if tuning == "full" else "inplace")
    # and an exact step's forwards price each model call one sweep over the weights higher (scoring.py)
    assert r["call_cost_tokens"] == 64 + (EXACT_SWEEP_TOKENS if tuning == "full" else 0)
    trained = torch.load(out / "checkpoint.pt", weights_only=False)["params"]
    # full fine-tuning trains the bfloat16 weights themselves; peft's adapters stay float32
    assert {t.dtype for t in trained.values()} == {torch.bfloat16 if tuning == "full" else torch.float32}
    assert all(torch.isfinite(t.float()).all() for t in trained.values())
    # the run is rebuilt in its own dtype, from its checkpoint or by replaying its losses, to the same numbers
    assert main(["eval", "--run", str(out), "--quiet", "--json", str(tmp_path / "with.json")]) == 0
    (out / "checkpoint.pt").unlink()
    assert main(["eval", "--run", str(out), "--quiet", "--json", str(tmp_path / "without.json")]) == 0
    with_ckpt, replayed = (json.loads((tmp_path / f).read_text()) for f in ("with.json", "without.json"))
    assert with_ckpt["config"]["dtype"] == "bfloat16"
    assert replayed["metrics"] == with_ckpt["metrics"]
    assert with_ckpt["metrics"]["loss"] == pytest.approx(r["metrics"]["test_loss"], rel=1e-5)


@pytest.mark.parametrize("tuning,warned", [("full", True), ("lora", False)])
def test_zo_on_half_precision_weights_warns_that_small_updates_round_away(tmp_path, caplog, tuning, warned):
    folder, data = tiny_model_folder(tmp_path)
    with caplog.at_level("WARNING", logger="zoo"):
        assert _finetune_cli(folder, data, tmp_path / "run", "--tuning", tuning, "--dtype", "bfloat16") == 0
    assert ("ZO on bfloat16 weights: an update smaller than half a weight's spacing rounds away" in caplog.text) is warned


@pytest.mark.parametrize("perturbation,restored", [(None, True), ("inplace", False)])
def test_half_precision_zo_at_lr_zero_gives_back_every_weight_by_default(tmp_path, perturbation, restored):
    """In bfloat16 the way back by subtraction loses bits at eps = 1e-3 (docs/drift.md), so the CLI's default
    for half-precision weights is the exact mode; asked for explicitly, `inplace` shows the drift it avoids."""
    folder, data = tiny_model_folder(tmp_path)
    out = tmp_path / "run"
    extra = ["--perturbation", perturbation] if perturbation else []
    assert _finetune_cli(folder, data, out, "--lr", "0", "--eps", "1e-3", "--dtype", "bfloat16", *extra) == 0
    trained = torch.load(out / "checkpoint.pt", weights_only=False)["params"]
    start = dict(tiny_llama().to(torch.bfloat16).named_parameters())
    assert bits_equal([start[n] for n in trained], trained.values()) is restored


def test_an_encoder_head_stays_float32_on_a_bfloat16_encoder_and_trains(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)  # test fixture only: a fixed tiny encoder
    encoder = BertModel(BertConfig(vocab_size=len(WORDS) + 2, hidden_size=16, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=32)).to(torch.bfloat16)
    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    built = prepare(encoder, word_tokenizer(), task, "head", "head")
    assert isinstance(built.model, PooledClassifier) and built.model.head.weight.dtype == torch.float32
    cfg = FinetuneConfig(model="tiny-bert", task=str(tmp_path / "s.tsv"), steps=4, k=8, batch_size=4, lr=0.5,
                         eps=1e-2, mode="head", tuning="head", dtype="bfloat16", checkpoint_every=10)
    frozen = [p.detach().clone() for p in encoder.parameters()]
    finetune(cfg, built, few_shot(task, cfg.k, cfg.seed), tmp_path / "run", progress=False)
    assert built.model.head.weight.dtype == torch.float32 and built.model.head.weight.abs().sum() > 0
    assert bits_equal(frozen, encoder.parameters())


def _tiny_run(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = sentiment_file(tmp_path / "s.tsv")
    task = user_task(path)
    built = prepare(tiny_llama(), word_tokenizer(), task, "prompt", "full")
    cfg = FinetuneConfig(model="tiny", task=str(path), steps=4, k=8, batch_size=4, lr=1e-2, eps=1e-2,
                         checkpoint_every=2)
    return cfg, built, few_shot(task, cfg.k, cfg.seed)


def test_results_written_before_dtype_and_device_existed_still_count_as_finished(tmp_path):
    """A run folder of an older zoo has no dtype or device in its config: it ran in float32 on the CPU,
    so the same run is recognised as finished and not redone; a run asking for bfloat16 is refused."""
    cfg, built, splits = _tiny_run(tmp_path)
    finetune(cfg, built, splits, tmp_path / "run", progress=False)
    path = tmp_path / "run" / "results.json"
    old = json.loads(path.read_text())
    del old["config"]["dtype"], old["config"]["device"]
    path.write_text(json.dumps(old))
    calls = []
    built.model.register_forward_pre_hook(lambda *a: calls.append(1))
    assert finetune(cfg, built, splits, tmp_path / "run", progress=False) == old and not calls
    cfg.dtype = "bfloat16"
    with pytest.raises(ValueError, match="different config"):
        finetune(cfg, built, splits, tmp_path / "run", progress=False)


def test_dtype_names_and_device_strings_are_checked():
    assert dtype_of("bfloat16") is torch.bfloat16 and checked_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        dtype_of("int8")
    for bad, needle in (("bogus", "unknown device"), ("cuda:x", "unknown device"), ("meta", "unsupported device")):
        with pytest.raises(ValueError, match=needle):
            checked_device(bad)
    with pytest.raises(ValueError, match="unknown dtype"):
        FinetuneConfig(dtype="float8").validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
@pytest.mark.parametrize("command", ["finetune", "eval"])
def test_asking_for_cuda_without_it_is_a_one_line_error(tmp_path, capsys, command):
    data = sentiment_file(tmp_path / "s.tsv")
    argv = [command, "--task", str(data), "--device", "cuda"] + (["--out", str(tmp_path / "run")]
                                                                  if command == "finetune" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA device" in err
    assert not (tmp_path / "run").exists()


def test_on_a_gpu_the_prompt_scorer_keeps_batches_whole():
    """Built.to moves the model; for a CUDA device it also stops the scorer's length-sorted chunks
    (checked here with a stand-in model, since this machine may have no GPU; tests/test_gpu.py runs it)."""
    from zoo.finetune.build import Built
    from zoo.finetune.scoring import PromptScorer
    from zoo.tasks import Template

    class Model:
        def to(self, device):
            self.device = torch.device(device)
            return self

    template = Template("t", "{text}", (" a", " b"))
    for device, cost in (("cpu", 64), ("cuda", None), ("cuda:1", None)):
        built = Built(Model(), word_tokenizer(), PromptScorer(word_tokenizer(), template), "prompt", "full")
        assert built.to(device) is built and built.model.device == torch.device(device)
        assert built.scorer.call_cost_tokens == cost

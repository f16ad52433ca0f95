"""The fine-tuning loop on a tiny model: results, counts, exact resume, first-order baselines, the CLI."""

import json

import pytest
import torch

from zoo.finetune.build import prepare
from zoo.finetune.loop import FinetuneConfig, finetune, minibatch
from zoo.tasks import few_shot, user_task
from conftest import bits_equal, interrupt_at, sentiment_file, stop_at, tiny_llama, tiny_model_folder, word_tokenizer


def _setup(tmp_path, tuning="full", mode="prompt", **cfg):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = sentiment_file(tmp_path / "sentiment.tsv")
    task = user_task(path)
    model = tiny_llama()
    if mode == "head":
        from transformers import LlamaForSequenceClassification

        model = LlamaForSequenceClassification(model.config)
        model.config.pad_token_id = 0
    built = prepare(model, word_tokenizer(), task, mode, tuning)
    defaults = dict(model="tiny", task=str(path), steps=8, k=8, batch_size=4, lr=1e-2, eps=1e-2, eval_every=4,
                    checkpoint_every=3, mode=mode, tuning=tuning)
    config = FinetuneConfig(**{**defaults, **cfg})
    return config, built, few_shot(task, config.k, config.seed)


def _count_calls(model):
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    return calls


def test_results_file_has_what_users_read(tmp_path):
    cfg, built, splits = _setup(tmp_path)
    calls = _count_calls(built.model)
    r = finetune(cfg, built, splits, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(r))
    for key in ("config", "metrics", "forward_passes", "wall_time_s", "peak_memory_bytes"):
        assert key in saved
    assert saved["measured"]["threads"] == torch.get_num_threads() and saved["measured"]["torch"] == torch.__version__
    assert 0 <= saved["metrics"]["accuracy"] <= 1 and saved["metrics"]["test_examples"] == len(splits.test)
    assert saved["forward_passes"] == 2 * cfg.steps == sum(1 for _ in range(2 * cfg.steps))
    eval_batches = (1 + 2) * 1 + -(-len(splits.test) // 32)  # dev at 0, 4, 8 (one batch each), then test
    assert len(calls) == saved["forward_passes"] + eval_batches
    assert (tmp_path / "run" / "curve.png").stat().st_size > 1000
    assert [e["step"] for e in saved["history"]["evals"]] == [0, 4, 8]


@pytest.mark.parametrize("estimator", ["mezo-sgd", "n-spsa"])
def test_model_calls_count_passes_over_the_batch_when_the_scorer_runs_it_in_chunks(tmp_path, estimator):
    cfg, built, splits = _setup(tmp_path, estimator=estimator, steps=3)
    built.scorer.call_cost_tokens = 0  # every distinct length its own model call
    calls = _count_calls(built.model)
    r = finetune(cfg, built, splits, tmp_path / "run", progress=False)
    assert r["model_calls"] == r["forward_passes"] > 0
    assert len(calls) > r["forward_passes"] + 1 + 1  # the chunks really ran (plus a dev and a test eval)


@pytest.mark.parametrize("older_zoo", [False, True])
def test_resume_after_interruption_is_bit_exact(tmp_path, monkeypatch, older_zoo):
    """older_zoo: a checkpoint whose config predates the dtype and device fields (it ran in float32 on the CPU)."""
    cfg, built, splits = _setup(tmp_path / "a")
    straight = finetune(cfg, built, splits, tmp_path / "a" / "run", progress=False)
    final = [p.detach().clone() for p in built.model.parameters()]

    cfg, built, splits = _setup(tmp_path / "b")
    undo = interrupt_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, built, splits, tmp_path / "b" / "run", progress=False)
    payload = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=False)
    assert payload["step"] == 5
    if older_zoo:
        del payload["config"]["dtype"], payload["config"]["device"]
        torch.save(payload, tmp_path / "b" / "run" / "checkpoint.pt")
        (tmp_path / "b" / "run" / "trajectory.json").unlink()  # resume from that checkpoint, not the loss log
    undo()
    cfg, fresh, splits = _setup(tmp_path / "b")  # a new process: weights back at their start
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    assert bits_equal(final, fresh.model.parameters())
    assert resumed["history"]["loss"] == straight["history"]["loss"]
    assert resumed["metrics"] == straight["metrics"]


@pytest.mark.parametrize("tuning", ["full", "lora", "prefix"])
def test_a_run_resumes_from_its_trajectory_log_alone_bit_for_bit(tmp_path, monkeypatch, tuning):
    """Without checkpoint.pt (a fresh clone holds only the committed log) the run replays its logged losses."""
    cfg, built, splits = _setup(tmp_path / "a", tuning=tuning)
    straight = finetune(cfg, built, splits, tmp_path / "a" / "run", progress=False)
    final = [p.detach().clone() for p in built.model.parameters()]
    assert len(straight["history"]["step_losses"]) == cfg.steps
    assert all(len(losses) == 2 for losses in straight["history"]["step_losses"])

    cfg, built, splits = _setup(tmp_path / "b", tuning=tuning)
    stop_at(monkeypatch, 6, cfg, built, splits, tmp_path / "b" / "run")
    (tmp_path / "b" / "run" / "checkpoint.pt").unlink()
    assert json.loads((tmp_path / "b" / "run" / "trajectory.json").read_text())["step"] == 6
    cfg, fresh, splits = _setup(tmp_path / "b", tuning=tuning)
    calls = _count_calls(fresh.model)
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    assert bits_equal(final, fresh.model.parameters())
    assert resumed["history"]["loss"] == straight["history"]["loss"]
    assert resumed["metrics"] == straight["metrics"] and resumed["forward_passes"] == straight["forward_passes"]
    assert not (tmp_path / "b" / "run" / "trajectory.json").exists()  # results.json holds the log now
    assert len(calls) == 2 * 2 + 1 + -(-len(splits.test) // 32)  # steps 7-8, the dev eval at 8, test: no replay forward


def test_results_record_the_noise_stream_that_drew_the_directions(tmp_path, monkeypatch):
    """Backend auto draws philox where the C kernel builds and torch-generator elsewhere: the same seed gives
    other directions, so results.json says which stream a run's numbers come from."""
    from zoo.perturb.kernels import cpu

    monkeypatch.delenv("ZOO_BACKEND", raising=False)
    runs = {}
    for backend in ("torch", "auto"):
        options = {} if backend == "auto" else {"backend": backend}
        cfg, built, splits = _setup(tmp_path / backend, estimator_options=options)
        runs[backend] = finetune(cfg, built, splits, tmp_path / backend / "run", progress=False)
    assert runs["torch"]["noise_stream"] == "torch-generator"
    assert runs["auto"]["noise_stream"] == ("philox" if cpu.available() else "torch-generator")
    if cpu.available():  # the same seed, other directions
        assert runs["torch"]["history"]["loss"][1:] != runs["auto"]["history"]["loss"][1:]


@pytest.mark.parametrize("source", ["checkpoint", "log"])
def test_a_run_resumes_on_its_own_noise_stream_where_auto_picks_another(tmp_path, monkeypatch, source):
    """Started where backend auto draws torch-generator (no C compiler), resumed where it draws philox: the run
    goes on with its own directions, bit for bit, from its checkpoint or from its log alone."""
    from zoo.perturb.kernels import cpu

    if not cpu.available():
        pytest.skip("no C compiler here: auto draws torch-generator everywhere, so the streams cannot differ")
    monkeypatch.setenv("ZOO_BACKEND", "torch")  # what auto means on a machine without the C kernel
    cfg, built, splits = _setup(tmp_path / "straight")
    straight = finetune(cfg, built, splits, tmp_path / "straight" / "run", progress=False)
    final = [p.detach().clone() for p in built.model.parameters()]
    _interrupted_run(tmp_path, monkeypatch, keep_checkpoint=source == "checkpoint")
    monkeypatch.setenv("ZOO_BACKEND", "cpu")
    cfg, fresh, splits = _setup(tmp_path)
    resumed = finetune(cfg, fresh, splits, tmp_path / "run", progress=False)
    assert resumed["noise_stream"] == "torch-generator" and resumed["history"]["loss"] == straight["history"]["loss"]
    assert bits_equal(final, fresh.model.parameters())


def test_a_philox_run_is_refused_where_no_philox_kernel_works(tmp_path, monkeypatch):
    from zoo.perturb.kernels import cpu

    if not cpu.available():
        pytest.skip("no C compiler here: no philox run can be started to resume")
    monkeypatch.setenv("ZOO_BACKEND", "cpu")
    _interrupted_run(tmp_path, monkeypatch)
    monkeypatch.setenv("ZOO_BACKEND", "torch")  # auto finds no philox kernel
    cfg, other, splits = _setup(tmp_path)
    before = [p.detach().clone() for p in other.model.parameters()]
    with pytest.raises(ValueError, match="'philox' stream, whose kernels do not work here"):
        finetune(cfg, other, splits, tmp_path / "run", progress=False)
    assert bits_equal(before, other.model.parameters())


def _interrupted_run(tmp_path, monkeypatch, keep_checkpoint=False):
    """A run interrupted at step 4, by default with its checkpoint.pt gone: only its trajectory.json is left."""
    cfg, built, splits = _setup(tmp_path)
    stop_at(monkeypatch, 4, cfg, built, splits, tmp_path / "run")
    if not keep_checkpoint:
        (tmp_path / "run" / "checkpoint.pt").unlink()


def test_first_order_runs_refuse_zo_options(tmp_path):
    cfg, built, splits = _setup(tmp_path, estimator="adam", estimator_options={"n": 4})
    with pytest.raises(ValueError, match="n: options of the ZO estimators; first-order 'adam' takes none"):
        finetune(cfg, built, splits, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_log_replayed_onto_other_weights_is_refused(tmp_path, monkeypatch):
    _interrupted_run(tmp_path, monkeypatch)
    cfg, other, splits = _setup(tmp_path)
    with torch.no_grad():
        next(other.model.parameters()).add_(1e-3)
    before = [p.detach().clone() for p in other.model.parameters()]
    with pytest.raises(ValueError, match="initial weights differ"):
        finetune(cfg, other, splits, tmp_path / "run", progress=False)
    assert bits_equal(before, other.model.parameters())


def test_a_finished_run_is_not_redone_and_a_changed_config_is_refused(tmp_path):
    cfg, built, splits = _setup(tmp_path)
    first = finetune(cfg, built, splits, tmp_path / "run", progress=False)
    calls = _count_calls(built.model)
    assert finetune(cfg, built, splits, tmp_path / "run", progress=False) == json.loads(json.dumps(first))
    assert not calls
    cfg.lr = 0.5
    with pytest.raises(ValueError, match="different config"):
        finetune(cfg, built, splits, tmp_path / "run", progress=False)


def test_a_runs_peak_memory_is_its_own_not_the_processs(tmp_path):
    """Runs share a process in paper_table and zoo bench: an earlier, larger peak must not be reported."""
    from zoo.memory import reset_peak, rss_peak_bytes

    if not reset_peak(cuda=False):
        pytest.skip("this kernel has no writable /proc/self/clear_refs: the peak cannot be reset")
    cfg, built, splits = _setup(tmp_path / "a")
    finetune(cfg, built, splits, tmp_path / "a" / "run", progress=False)  # the lazy imports (plots...) happen here
    spike = torch.ones(96 * 2**20)  # 384 MB, touched, then freed
    del spike
    earlier_peak = rss_peak_bytes()
    cfg, built, splits = _setup(tmp_path / "b")
    r = finetune(cfg, built, splits, tmp_path / "b" / "run", progress=False)
    assert r["peak_memory_scope"] == "run" and r["peak_memory_bytes"] < earlier_peak - 200 * 2**20


def test_minibatches_cover_each_epoch_once():
    batches = [minibatch(10, 4, 3, s) for s in range(6)]
    assert sorted(sum(batches[:3], [])) == list(range(10)) == sorted(sum(batches[3:], []))
    assert batches[:3] != batches[3:] and batches == [minibatch(10, 4, 3, s) for s in range(6)]


@pytest.mark.parametrize("estimator", ["sgd", "adam", "mezo-sgd"])
def test_training_lowers_the_training_loss(tmp_path, estimator):
    # MeZO takes twice the steps: one step's estimate is a single random direction
    lr, drop, steps = {"sgd": (1e-2, 0.05, 30), "adam": (3e-3, 0.5, 30), "mezo-sgd": (5e-3, 0.05, 60)}[estimator]
    cfg, built, splits = _setup(tmp_path, estimator=estimator, steps=steps, lr=lr, batch_size=16, eval_every=steps,
                                checkpoint_every=100)
    enc = built.scorer.encode(splits.train)
    loss = lambda: torch.nn.functional.cross_entropy(built.scorer(built.model, enc), enc.labels).item()
    with torch.no_grad():
        before = loss()
    r = finetune(cfg, built, splits, tmp_path / "run", progress=False)
    with torch.no_grad():
        after = loss()
        assert after < before - drop
    assert r["backward_passes"] == (steps if estimator != "mezo-sgd" else 0)


def test_non_differentiable_objective(tmp_path):
    cfg, built, splits = _setup(tmp_path, objective="accuracy", steps=4)
    r = finetune(cfg, built, splits, tmp_path / "run", progress=False)
    assert all(0 <= v <= 1 for v in r["history"]["loss"])
    cfg, built, splits = _setup(tmp_path, objective="f1", estimator="adam")
    with pytest.raises(ValueError, match="not differentiable"):
        finetune(cfg, built, splits, tmp_path / "run2", progress=False)


@pytest.mark.parametrize("estimator", ["mezo-sgd", "sparse-mezo"])
@pytest.mark.parametrize("tuning,mode", [("lora", "prompt"), ("prefix", "prompt"), ("head", "head"), ("lora", "head")])
def test_tunings_change_only_their_parameters(tmp_path, tuning, mode, estimator):
    cfg, built, splits = _setup(tmp_path, tuning=tuning, mode=mode, steps=3, lr=0.1, estimator=estimator)
    frozen = {n: p.detach().clone() for n, p in built.model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in built.model.named_parameters() if p.requires_grad}
    finetune(cfg, built, splits, tmp_path / "run", progress=False)
    now = dict(built.model.named_parameters())
    assert all(torch.equal(now[n], v) for n, v in frozen.items())
    assert any(not torch.equal(now[n], v) for n, v in trained.items())
    # a zero-initialised tensor (LoRA's B) moves under Sparse MeZO too: its threshold would be 0
    assert all(not torch.equal(now[n], v) for n, v in trained.items() if not v.any())
    if mode == "head":
        assert any("score" in n for n in trained)


@pytest.mark.parametrize("tuning", ["full", "lora", "prefix"])
def test_cli_eval_of_a_run_reproduces_its_test_accuracy_with_or_without_its_checkpoint(tmp_path, tuning):
    """`zoo eval --run` loads checkpoint.pt, or, where a clone holds only results.json, replays its losses."""
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "6",
                 "--batch-size", "4", "--tuning", tuning, "--lr", "0.5", "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert main(["eval", "--run", str(out), "--quiet", "--json", str(tmp_path / "with.json")]) == 0
    (out / "checkpoint.pt").unlink()
    assert main(["eval", "--run", str(out), "--quiet", "--json", str(tmp_path / "without.json")]) == 0
    with_ckpt, replayed = (json.loads((tmp_path / f).read_text()) for f in ("with.json", "without.json"))
    assert with_ckpt["metrics"]["loss"] == pytest.approx(r["metrics"]["test_loss"], rel=1e-5)
    assert replayed["metrics"] == with_ckpt["metrics"]  # the same weights, bit for bit, give the same numbers
    # a log that does not fit the weights it is replayed on is refused, not evaluated
    r = json.loads((out / "results.json").read_text())
    r["history"]["step_losses"][2][0] += 1e-3
    (out / "results.json").write_text(json.dumps(r))
    assert main(["eval", "--run", str(out), "--quiet"]) == 2
    (out / "results.json").unlink()
    assert main(["eval", "--run", str(out), "--quiet"]) == 2


def test_cli_eval_replays_a_run_on_the_noise_stream_it_drew(tmp_path, monkeypatch):
    """A run finished where auto drew torch-generator is rebuilt with torch-generator where auto draws philox."""
    from zoo.cli import main
    from zoo.perturb.kernels import cpu

    if not cpu.available():
        pytest.skip("no C compiler here: auto draws torch-generator everywhere, so the streams cannot differ")
    folder, data = tiny_model_folder(tmp_path)
    out = tmp_path / "run"
    monkeypatch.setenv("ZOO_BACKEND", "torch")
    assert main(["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "6",
                 "--batch-size", "4", "--lr", "0.5", "--out", str(out)]) == 0
    assert main(["eval", "--run", str(out), "--quiet", "--json", str(tmp_path / "with.json")]) == 0
    (out / "checkpoint.pt").unlink()
    monkeypatch.setenv("ZOO_BACKEND", "cpu")
    assert main(["eval", "--run", str(out), "--quiet", "--json", str(tmp_path / "without.json")]) == 0
    with_ckpt, replayed = (json.loads((tmp_path / f).read_text()) for f in ("with.json", "without.json"))
    assert replayed["metrics"] == with_ckpt["metrics"]


def test_cli_finetune_and_eval_on_a_local_model_folder(tmp_path, capsys):
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    out = tmp_path / "run"
    args = ["--model", str(folder), "--task", str(data), "--k", "4", "--quiet"]
    assert main(["finetune", *args, "--steps", "4", "--batch-size", "4", "--lr", "0.01", "--out", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    r = json.loads((out / "results.json").read_text())
    assert r["forward_passes"] == 8
    assert main(["eval", *args, "--run", str(out), "--json", str(tmp_path / "e.json")]) == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["metrics"]["accuracy"] == pytest.approx(r["metrics"]["accuracy"])
    assert main(["eval", *args, "--icl", "1", "--limit", "5", "--json", str(tmp_path / "i.json")]) == 0
    assert json.loads((tmp_path / "i.json").read_text())["metrics"]["examples"] == 5


@pytest.mark.parametrize("argv,needle", [
    (["finetune", "--estimator", "mezo-sdg", "--out", "x"], "mezo-sgd"),
    (["finetune", "--task", "imdb", "--out", "x"], "unknown task"),
    (["finetune", "--model", "gpt-17", "--task", "{data}", "--out", "x"], "unknown model"),
    (["finetune", "--task", "{data}", "--label-column", "stars", "--out", "x"], "missing column 'stars'"),
    (["eval", "--task", "{data}", "--model", "minilm-l6x"], "unknown model"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, needle):
    from zoo.cli import main

    data = sentiment_file(tmp_path / "s.tsv")
    argv = [a.replace("{data}", str(data)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_a_checkpoint_without_a_loss_log_resumes_but_writes_no_partial_log(tmp_path, monkeypatch):
    """Checkpoints written before the log existed have no `step_losses`: a log begun mid-run could not be
    replayed, so none is written and the run finishes from the checkpoint as before."""
    cfg, built, splits = _setup(tmp_path / "a")
    straight = finetune(cfg, built, splits, tmp_path / "a" / "run", progress=False)
    cfg, built, splits = _setup(tmp_path / "b")
    stop_at(monkeypatch, 4, cfg, built, splits, tmp_path / "b" / "run")
    ckpt = tmp_path / "b" / "run" / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=False)
    del payload["history"]["step_losses"]
    torch.save(payload, ckpt)
    (tmp_path / "b" / "run" / "trajectory.json").unlink()
    cfg, fresh, splits = _setup(tmp_path / "b")
    undo = interrupt_at(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    undo()
    assert not (tmp_path / "b" / "run" / "trajectory.json").exists()
    cfg, fresh, splits = _setup(tmp_path / "b")
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    assert resumed["history"]["loss"] == straight["history"]["loss"] and resumed["metrics"] == straight["metrics"]
    assert "step_losses" not in resumed["history"]

"""perturbation='batched' (P-RGE): every point of a step from one vmapped forward."""

import copy
import math

import pytest
import torch

import zoo
from conftest import SMALL, bits_equal, lm_batch, perturbing_estimators, snapshot, tiny_llama

BATCHED_ESTIMATORS = perturbing_estimators()


def _loss64(model, batch):
    """Next-token cross-entropy in the model's dtype (transformers' own loss upcasts to float32)."""
    logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1))


def _opt(name, model, perturbation, **extra):
    hyper = {**SMALL.get(name, {}), **extra}
    lr = 1e-2 if name in ("mezo-adam", "zo-sign") else 1e-3
    return zoo.get(name, model, lr=lr, eps=1e-3, seed=5, perturbation=perturbation, **hyper)


@pytest.mark.parametrize("name", BATCHED_ESTIMATORS)
def test_each_step_equals_the_sequential_exact_step_within_float32_rounding(name):
    runs = {}
    for mode in ("exact", "batched"):  # float64: the vmapped and the sequential forwards round alike
        model = tiny_llama(torch.float64)
        opt = _opt(name, model, mode)
        calls, records = [], []
        for t in range(3):
            opt.step(lambda t=t: calls.append(1) or _loss64(model, lm_batch(seed=t)))
            records.append(list(opt.last_record))
        runs[mode] = (snapshot(model), records, len(calls), dict(opt.zo_state))
    (w_e, rec_e, calls_e, zo_e), (w_b, rec_b, calls_b, zo_b) = runs["exact"], runs["batched"]
    for a, b in zip(rec_e, rec_b):
        assert len(a) == len(b) and b == pytest.approx(a, rel=1e-12)
    start = snapshot(tiny_llama(torch.float64))
    moved = max((e - s).abs().max().item() for e, s in zip(w_e, start))
    err = max((e - b).abs().max().item() for e, b in zip(w_e, w_b))
    tol = 1e-8 if name == "hizoo" else 1e-9  # HiZOO's curvature divides loss differences by eps^2
    assert moved > 0 and err <= tol * moved, f"{name}: {err:.3g} against a movement of {moved:.3g}"
    # one model call per run of points on one batch and base; the points themselves are counted as queries
    assert zo_b["queries"] == zo_e["queries"] == zo_e["forward_passes"] == calls_e
    assert zo_b["forward_passes"] == calls_b and calls_b < calls_e


def test_n_spsa_estimate_equals_the_sequential_estimate():
    estimates = {}
    for mode in ("inplace", "batched"):
        model = tiny_llama()
        opt = zoo.get("n-spsa", model, n=4, lr=1e-3, eps=1e-3, seed=2, perturbation=mode)
        estimates[mode] = opt.estimate(lambda: model(**lm_batch(seed=1)).loss)
    for a, b in zip(estimates["inplace"], estimates["batched"]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3 * a.abs().max().item())
    assert max(a.abs().max().item() for a in estimates["batched"]) > 0


def test_the_weights_are_never_written_while_points_are_evaluated():
    model = tiny_llama()
    start = snapshot(model)
    opt = zoo.get("n-spsa", model, n=3, lr=0.0, eps=1e-1, seed=1, perturbation="batched")
    for t in range(3):
        opt.step(lambda t=t: model(**lm_batch(seed=t)).loss)
    assert bits_equal(start, snapshot(model))
    assert opt.zo_state["forward_passes"] == 3 and opt.zo_state["queries"] == 18


def test_a_batched_run_replays_bit_for_bit_and_resumes_from_its_state_dict():
    model = tiny_llama()
    opt = zoo.get("mezo-adam", model, lr=1e-2, eps=1e-3, seed=3, n=2, perturbation="batched")
    log = []
    for t in range(3):
        opt.step(lambda t=t: model(**lm_batch(seed=t)).loss)
        log.append(opt.last_record)
    saved = copy.deepcopy(opt.state_dict())  # torch.optim's state_dict holds the live moments
    opt.step(lambda: model(**lm_batch(seed=3)).loss)
    log.append(opt.last_record)
    # the update reads only the losses: an exact-mode estimator fed the batched losses lands on the same bits
    for mode in ("batched", "exact"):
        again = tiny_llama()
        replayed = zoo.get("mezo-adam", again, lr=1e-2, eps=1e-3, seed=3, n=2, perturbation=mode)
        for losses in log:
            replayed.replay(losses)
        assert bits_equal(snapshot(again), snapshot(model)), mode
    assert replayed.zo_state["queries"] == 16
    # resume: load the state after 3 steps, take the 4th step on the same batch
    resumed_model = tiny_llama()
    first = zoo.get("mezo-adam", resumed_model, lr=1e-2, eps=1e-3, seed=3, n=2, perturbation="batched")
    for losses in log[:3]:
        first.replay(losses)
    resumed = zoo.get("mezo-adam", resumed_model, lr=1e-2, eps=1e-3, seed=3, n=2, perturbation="batched")
    resumed.load_state_dict(saved)
    resumed.step(lambda: resumed_model(**lm_batch(seed=3)).loss)
    assert bits_equal(snapshot(resumed_model), snapshot(model)) and resumed.zo_state == opt.zo_state


def test_lora_factors_through_peft():
    peft = pytest.importorskip("peft")
    results = {}
    for mode in ("exact", "batched"):
        with torch.random.fork_rng():  # test fixture: the same random (non-zero) LoRA factors in both runs
            torch.manual_seed(0)
            model = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                      init_lora_weights=False))
        model.eval()
        opt = zoo.get("n-spsa", model, n=4, lr=1e-3, eps=1e-2, seed=0, perturbation=mode)
        losses = []
        for t in range(3):
            opt.step(lambda t=t: model(**lm_batch(seed=t)).loss)
            losses.append(list(opt.last_record))
        results[mode] = (losses, [p.detach().clone() for p in model.parameters() if p.requires_grad])
    for a, b in zip(results["exact"][0], results["batched"][0]):
        assert b == pytest.approx(a, rel=1e-5)
    for a, b in zip(results["exact"][1], results["batched"][1]):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


def test_what_batched_cannot_do_is_refused_clearly():
    model = tiny_llama()
    with pytest.raises(ValueError, match="needs the model"):
        zoo.get("mezo-sgd", list(model.parameters()), perturbation="batched")
    with pytest.raises(ValueError, match="evaluates no perturbed points"):
        zoo.get("forward-grad", model, perturbation="batched")
    opt = zoo.get("mezo-sgd", model, lr=1e-3, perturbation="batched")
    before, counters = snapshot(model), dict(opt.zo_state)
    with pytest.raises(ValueError, match="loss as a tensor"):
        opt.step(lambda: float(model(**lm_batch()).loss))
    assert bits_equal(before, snapshot(model)) and opt.zo_state == counters
    with pytest.raises(RuntimeError, match="boom"):
        opt.step(lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert bits_equal(before, snapshot(model)) and opt.zo_state == counters


def test_random_draws_inside_the_closure_are_shared_by_every_point():
    """Dropout in training mode: one mask for all points (common random numbers), so at lr 0 and eps -> 0
    the two losses of a point pair agree, as they would not with a fresh mask per point."""
    model = tiny_llama()
    model.train()
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.5
    opt = zoo.get("n-spsa", model, n=2, lr=0.0, eps=1e-6, perturbation="batched")
    opt.step(lambda: model(**lm_batch()).loss)
    record = opt.last_record
    assert max(record) - min(record) < 1e-3
    sequential = zoo.get("n-spsa", model, n=2, lr=0.0, eps=1e-6, perturbation="exact")
    sequential.step(lambda: model(**lm_batch()).loss)
    assert max(sequential.last_record) - min(sequential.last_record) > 1e-3


def test_a_non_finite_point_skips_the_step_and_keeps_the_weights():
    model = tiny_llama()
    before = snapshot(model)
    opt = zoo.get("n-spsa", model, n=2, lr=1e-3, perturbation="batched")
    loss = opt.step(lambda: model(**lm_batch()).loss * float("nan"))
    assert math.isnan(float(loss)) and opt.zo_state["skipped_steps"] == 1 and bits_equal(before, snapshot(model))


@pytest.mark.parametrize("tuning", ["lora", "prefix"])
def test_zoo_finetune_batched_follows_the_exact_run_and_rebuilds_from_its_log(tmp_path, tuning):
    import json

    from conftest import tiny_model_folder
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    common = ["--model", str(folder), "--task", str(data), "--k", "4", "--quiet"]
    train = [*common, "--tuning", tuning, "--steps", "4", "--batch-size", "4", "--lr", "0.01", "--eps", "0.01", "--eval-every", "2",
             "--estimator", "n-spsa", "--n", "4"]
    runs = {}
    for mode in ("exact", "batched"):
        assert main(["finetune", *train, "--perturbation", mode, "--out", str(tmp_path / mode)]) == 0
        runs[mode] = json.loads((tmp_path / mode / "results.json").read_text())
    exact, batched = runs["exact"], runs["batched"]
    assert batched["history"]["loss"] == pytest.approx(exact["history"]["loss"], rel=1e-5)
    assert batched["perturbation"] == "batched" and batched["queries"] == exact["queries"] == 32
    assert batched["forward_passes"] == batched["model_calls"] == 4 and exact["forward_passes"] == 32
    (tmp_path / "batched" / "checkpoint.pt").unlink(missing_ok=True)  # rebuilt from the logged losses alone
    assert main(["eval", *common, "--run", str(tmp_path / "batched"), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["accuracy"] == batched["metrics"]["accuracy"]

"""Policy-gradient masks (arXiv 2406.10576): unit masks, the projection, the score-function estimate."""

import copy
import math

import pytest
import torch

from conftest import bits_equal, lm_batch, snapshot, tiny_llama
from zoo.estimators import PolicyGradientMasks
from zoo.estimators.policy_gradient import project_to_budget
from zoo.pruning import UnitMasks, keep_top, magnitude_scores


class ToyMasks:
    """Stands in for UnitMasks: the closure reads the mask it was last set to."""

    def __init__(self, n):
        self.total, self.current = n, torch.ones(n)

    def set(self, flat):
        self.current = flat.clone()


def toy(n=12, seed=0):
    weights = torch.linspace(1.0, 0.1, n, dtype=torch.float64)  # dropping unit i costs w_i
    masks = ToyMasks(n)
    return masks, weights, lambda: float((weights * (1 - masks.current)).sum())


def test_the_projection_meets_the_budget_and_is_the_nearest_such_point():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(40, generator=gen, dtype=torch.float64)
    s = project_to_budget(v, 12.0, 0.01, 0.99)
    assert abs(float(s.sum()) - 12.0) < 1e-9 and float(s.min()) >= 0.01 and float(s.max()) <= 0.99
    for _ in range(200):  # any other feasible point is farther from v
        other = project_to_budget(torch.randn(40, generator=gen, dtype=torch.float64), 12.0, 0.01, 0.99)
        assert float((other - v).norm()) >= float((s - v).norm()) - 1e-9


def test_the_score_function_estimate_is_unbiased():
    """E[(L(m) - b) grad log p(m|s)] = grad_s E[L] = -w for L = sum w (1 - m), with b fixed beforehand."""
    masks, w, closure = toy()
    opt = PolicyGradientMasks(masks, keep=0.5, lr=0.0, samples=1)
    opt.pg_state["baseline"] = 3.0
    s = opt.probs.clone()
    total, draws = torch.zeros_like(s), 20000
    for step in range(draws):
        (m,) = opt.sampled_masks(step)
        masks.set(m)
        total += (closure() - 3.0) * (m - s) / (s * (1 - s))
    mean = total / draws
    se = 1.0 / math.sqrt(draws) * 2 * float(w.sum())  # a loose bound on the per-coordinate std of the estimate
    assert (mean + w).abs().max() < 3 * se, (mean + w)


def test_it_learns_to_keep_the_units_whose_loss_is_largest():
    masks, w, closure = toy()
    opt = PolicyGradientMasks(masks, keep=0.5, lr=0.02, samples=8, seed=1)
    for _ in range(150):
        opt.step(closure)
    assert opt.hard_mask().tolist() == [1.0] * 6 + [0.0] * 6
    assert abs(float(opt.probs.sum()) - 6.0) < 1e-9
    assert masks.current.tolist() == [1.0] * 12  # the model is left unmasked after a step


def test_replay_and_resume_are_bit_exact():
    masks, w, closure = toy()
    opt = PolicyGradientMasks(masks, keep=0.25, lr=0.05, samples=3, seed=4)
    log = []
    for t in range(5):
        opt.step(closure)
        log.append(opt.last_record)
        if t == 2:
            saved = copy.deepcopy(opt.state_dict())
    again = PolicyGradientMasks(ToyMasks(12), keep=0.25, lr=0.05, samples=3, seed=4)
    for losses in log:
        again.replay(losses)
    assert torch.equal(again.probs, opt.probs) and again.pg_state == opt.pg_state
    resumed = PolicyGradientMasks(masks, keep=0.25, lr=0.05, samples=3, seed=4)
    resumed.load_state_dict(saved)
    for _ in range(2):
        resumed.step(closure)
    assert torch.equal(resumed.probs, opt.probs) and resumed.pg_state == opt.pg_state


def test_a_failing_closure_leaves_the_model_unmasked_and_the_step_untaken():
    masks, w, closure = toy()
    opt = PolicyGradientMasks(masks, keep=0.5, samples=3)
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return closure()

    before = (opt.probs.clone(), dict(opt.pg_state))
    with pytest.raises(RuntimeError, match="boom"):
        opt.step(failing)
    assert masks.current.tolist() == [1.0] * 12
    assert torch.equal(opt.probs, before[0]) and opt.pg_state == before[1]


def test_bad_settings_are_refused():
    masks = ToyMasks(4)
    for kwargs, match in [({"keep": 0.0}, "keep"), ({"keep": 1.5}, "keep"), ({"keep": 0.5, "samples": 0}, "samples"),
                          ({"keep": 0.5, "lr": -1.0}, "lr"), ({"keep": 0.999}, "keep")]:
        with pytest.raises(ValueError, match=match):
            PolicyGradientMasks(masks, **kwargs)
    with pytest.raises(ValueError, match="closure"):
        PolicyGradientMasks(masks, keep=0.5).step(None)


def test_unit_masks_of_ones_change_nothing_and_a_zeroed_channel_equals_a_zeroed_column():
    model = tiny_llama(torch.float64)
    batch = lm_batch()
    plain = model(**batch).logits
    masks = UnitMasks(model.model.layers, "mlp")
    assert masks.per_block == [64, 64] and torch.equal(model(**batch).logits, plain)
    flat = torch.ones(masks.total)
    flat[[3, 64 + 10]] = 0
    masks.set(flat)
    masked = model(**batch).logits
    masks.remove()
    reference = tiny_llama(torch.float64)
    with torch.no_grad():
        reference.model.layers[0].mlp.down_proj.weight[:, 3] = 0
        reference.model.layers[1].mlp.down_proj.weight[:, 10] = 0
    torch.testing.assert_close(masked, reference(**batch).logits, rtol=0, atol=1e-12)
    assert (masked - plain).abs().max() > 1e-6 and torch.equal(model(**batch).logits, plain)


def test_head_masks_equal_zeroed_output_columns_of_that_head():
    model = tiny_llama(torch.float64)
    batch = lm_batch()
    masks = UnitMasks(model.model.layers, "heads")
    assert masks.per_block == [4, 4]
    flat = torch.ones(8)
    flat[5] = 0  # block 1, head 1: columns 8..15 of o_proj (head_dim 8)
    masks.set(flat)
    masked = model(**batch).logits
    reference = tiny_llama(torch.float64)
    with torch.no_grad():
        reference.model.layers[1].self_attn.o_proj.weight[:, 8:16] = 0
    torch.testing.assert_close(masked, reference(**batch).logits, rtol=0, atol=1e-12)


def test_magnitude_baseline_keeps_the_largest_weights():
    model = tiny_llama()
    scores = magnitude_scores(model.model.layers, "mlp")
    assert scores.shape == (128,)
    mask = keep_top(scores, 0.25)
    assert int(mask.sum()) == 32 and float(scores[mask.bool()].min()) >= float(scores[~mask.bool()].max())
    assert magnitude_scores(model.model.layers, "heads").shape == (8,)


def test_the_weights_never_move_while_masks_train():
    model = tiny_llama()
    before = snapshot(model)
    masks = UnitMasks(model.model.layers, "mlp")
    opt = PolicyGradientMasks(masks, keep=0.5, samples=2)
    for t in range(2):
        opt.step(lambda t=t: model(**lm_batch(seed=t)).loss)
    assert bits_equal(before, snapshot(model)) and opt.pg_state["forward_passes"] == 4


def test_zoo_prune_writes_results_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    """On a tiny model and a tiny SQuAD file: the command's results, and a stopped run that resumes."""
    import json

    from conftest import tiny_model_folder
    from zoo.cli import main
    from zoo.pruning import experiment

    folder, _ = tiny_model_folder(tmp_path)
    squad = tmp_path / "data" / "squad"
    squad.mkdir(parents=True)
    articles = [{"title": f"t{a}", "paragraphs": [{"context": f"the movie was good {a} {p} it was great .",
                                                   "qas": [{"id": f"{a}-{p}", "question": "was it ?",
                                                            "answers": [{"text": "good"}]}]} for p in range(4)]}
                for a in range(6)]
    (squad / "dev-v1.1.json").write_text(json.dumps({"data": articles}))
    monkeypatch.setattr(experiment, "sst2_accuracy", lambda model, tok, limit, data_dir=None: 0.5)  # no SST-2 here
    args = ["prune", "--model", str(folder), "--keep", "0.5", "--samples", "2", "--batch-size", "2", "--seq-len",
            "16", "--held-out", "4", "--data-dir", str(tmp_path / "data"), "--quiet"]
    assert main([*args, "--steps", "6", "--out", str(tmp_path / "a")]) == 0
    straight = json.loads((tmp_path / "a" / "results.json").read_text())
    assert straight["forward_passes"] == 12 and len(straight["losses"]) == 6
    assert set(straight["scores"]) == {"unpruned", "magnitude", "policy-gradient"}
    assert straight["scores"]["policy-gradient"]["kept_units"] == straight["units_total"] // 2
    # 4 steps (a checkpoint every 20 steps and at the end), then the same command with 6: it resumes
    assert main([*args, "--steps", "4", "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--steps", "6", "--out", str(tmp_path / "b")]) != 0  # other settings: refused, named
    (tmp_path / "b" / "results.json").unlink()
    state = torch.load(tmp_path / "b" / "prune_state.pt", weights_only=False)
    state["config"]["steps"] = 6  # as if the 6-step run had been stopped after its 4th step
    torch.save(state, tmp_path / "b" / "prune_state.pt")
    assert main([*args, "--steps", "6", "--out", str(tmp_path / "b")]) == 0
    resumed = json.loads((tmp_path / "b" / "results.json").read_text())
    assert resumed["mask"] == straight["mask"] and resumed["losses"] == straight["losses"]

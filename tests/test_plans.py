"""Query plans: the two-point estimators retrace the trajectories recorded before plans existed."""

import json

import pytest

from trajectories import cases, machine_signature, record, reference


@pytest.fixture(scope="module")
def recorded():
    return reference()


@pytest.mark.parametrize("label,name,dtype,options", list(cases()), ids=[c[0] for c in cases()])
def test_two_point_estimators_retrace_the_recorded_trajectories_bit_for_bit(label, name, dtype, options, recorded):
    runs, source = recorded
    assert record(name, dtype, options) == runs[label], f"against {source}"


def test_the_committed_recordings_name_the_machine_that_made_them():
    """Without git history the committed file stands in; it must say which CPU its bits hold on."""
    from trajectories import PATH

    saved = json.loads(PATH.read_text())
    assert isinstance(saved.get("_machine"), str) and saved["_machine"].split()[0] == machine_signature().split()[0]


# -- each estimator's update against the float64 reference, for fixed keys and losses -------------------------------
import random  # noqa: E402

import torch  # noqa: E402

import zoo  # noqa: E402
from conftest import SMALL, BlockMLP, regression_data  # noqa: E402
from reference import Reference  # noqa: E402
from test_reference import HYPER, OWN  # noqa: E402


@pytest.mark.parametrize("perturbation", ["inplace", "exact"])
@pytest.mark.parametrize("name", zoo.available())
def test_update_for_fixed_losses_equals_the_float64_reference(name, perturbation):
    """The losses are made up (not the model's): only the plan's arithmetic and the rule are compared."""
    model = BlockMLP()
    x, y = regression_data()
    hyper = {**HYPER, **SMALL.get(name, {}), **zoo.estimators.spec(name).defaults, **OWN.get(name, {})}
    opt = zoo.get(name, model, seed=11, perturbation=perturbation, **hyper)
    ref = Reference(model, name, hyper, seed=11, stream=opt.backend.stream.name)
    theta0 = {k: v.clone() for k, v in ref.theta.items()}
    rng = random.Random(0)
    for t in range(5):
        losses = [1.0 + 0.05 * rng.random() for _ in range(opt.plan.record_length(t, opt.slots))]
        opt.replay(losses)
        ref.step(x, y, losses=losses)
    got = dict(model.named_parameters())
    moved = max((ref.theta[k] - theta0[k]).abs().max().item() for k in ref.names)
    err = max((got[k].detach() - ref.theta[k]).abs().max().item() for k in ref.names)
    assert moved > 1e-4, "the reference did not move: the test would be vacuous"
    tol = 1e-5 if name == "subzero" else 1e-12  # SubZero's bases: a float32 QR in zoo, float64 in the reference
    assert err <= tol * moved, f"{name}/{perturbation}: max error {err:.3g} vs movement {moved:.3g}"


# -- the math of each new estimator ------------------------------------------------------------------------------------
import math  # noqa: E402

from torch import nn  # noqa: E402

from conftest import bits_equal, lm_batch, snapshot, tiny_llama  # noqa: E402


class Function(nn.Module):
    """f(theta) for a known function of one float64 parameter vector."""

    def __init__(self, theta, fn):
        super().__init__()
        self.theta = nn.Parameter(torch.as_tensor(theta, dtype=torch.float64).clone())
        self.fn = fn

    def forward(self):
        return self.fn(self.theta)


def test_zo_sign_expected_update_is_parallel_to_the_gradient():
    """E[sign(g.z) z] = sqrt(2/pi) g/|g| for Gaussian z: the mean step of ZO-SGD-Sign points along -g."""
    g = torch.tensor([3.0, -1.0, 0.5, 2.0, -2.5, 0.1], dtype=torch.float64)
    model = Function(torch.zeros(6), lambda t: (g * t).sum())
    opt = zoo.get("zo-sign", model, lr=1.0, eps=1e-3, seed=0)
    draws = 4000
    mean = sum(opt.estimate(model)[0] for _ in range(draws)) / draws
    expected = math.sqrt(2 / math.pi) * g / g.norm()
    cosine = torch.dot(mean, g) / (mean.norm() * g.norm())
    assert cosine > 0.995
    assert (mean - expected).abs().max() < 5 / math.sqrt(draws)
    # and the step is along that estimate: theta moves by -lr * estimate, whatever the size of the difference
    step = zoo.get("zo-sign", Function(torch.zeros(6), lambda t: 1e6 * (g * t).sum()), lr=1.0, seed=0)
    probe = zoo.get("zo-sign", Function(torch.zeros(6), lambda t: 1e6 * (g * t).sum()), lr=1.0, seed=0)
    est = probe.estimate(probe.module)[0]
    step.step(step.module)
    torch.testing.assert_close(step.module.theta.detach(), -est, rtol=0, atol=1e-12)


def _difference_error(name, eps, n=16):
    """Mean |finite-difference coefficient - grad f . z_j| over n fixed keys, on a known cubic."""
    a = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.5], dtype=torch.float64)
    fn = lambda t: (a * t**3).sum() + 0.5 * (t**2).sum() + t.sum()  # noqa: E731
    theta = torch.tensor([0.3, -0.2, 0.5, 0.1, -0.4], dtype=torch.float64)
    exact = zoo.get("forward-grad", Function(theta, fn), lr=0.0, n=n, seed=5)
    exact.step(exact.module)
    derivative = exact.last_record[1::2]  # [L, grad f . z_j] per direction
    opt = zoo.get(name, Function(theta, fn), lr=0.0, eps=eps, n=n, seed=5)
    opt.step(opt.module)
    r = opt.last_record
    if name == "one-sided":
        coefs = [(v - r[0]) / eps for v in r[1:]]
    else:
        coefs = [(r[i] - r[i + 1]) / (2 * eps) for i in range(0, len(r), 2)]
    return sum(abs(c - d) for c, d in zip(coefs, derivative)) / n


def test_one_sided_bias_is_first_order_in_eps_and_two_sided_second_order():
    """Per direction, (L(theta + eps z) - L(theta))/eps = grad.z + eps/2 z^T H z + O(eps^2), while the
    central difference loses the eps term. (Over Gaussian z the eps term averages to zero, an odd
    moment, so what one-sided costs is that per-direction error: variance.) Measured on a cubic
    against the exact directional derivative from the forward-grad estimator along the same keys."""
    for name, order in (("one-sided", 1.0), ("n-spsa", 2.0)):
        errors = [_difference_error(name, eps) for eps in (0.08, 0.04, 0.02, 0.01)]
        slopes = [math.log2(e0 / e1) for e0, e1 in zip(errors, errors[1:])]
        assert all(abs(s - order) < 0.15 for s in slopes), (name, errors, slopes)


@pytest.mark.parametrize("curvature,scale", [("unbiased", 1.0), ("hizoo", None)])
def test_hizoo_hessian_converges_to_the_known_diagonal(curvature, scale):
    """On f = 1/2 sum D_i theta_i^2 the unbiased update's H converges to D; the paper's update
    (|kappa| H z^2, no centring) to D (d + 2)/2, proportional to D (HessianRule's docstring)."""
    d_true = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    d = d_true.numel()
    scale = scale if scale is not None else (d + 2) / 2
    model = Function(torch.full((d,), 0.3), lambda t: 0.5 * (d_true * t * t).sum())
    opt = zoo.get("hizoo", model, lr=0.0, eps=1e-3, seed=0, hessian_smooth=0.003, curvature=curvature)
    total, count = torch.zeros(d, dtype=torch.float64), 0
    for t in range(15000):  # H is a noisy EMA: average its second two thirds
        opt.step(model)
        if t >= 5000:
            total += opt.state[model.theta]["hessian"].double()
            count += 1
    mean = total / count
    assert (mean / (scale * d_true) - 1).abs().max() < 0.2, mean / scale  # the other form is off by (d + 2)/2 = 3


def _svrg_error(estimator, seed, offset):
    """|g_hat - grad f|^2 / |grad f|^2 of one estimate on a minibatch of a least-squares problem."""
    g = torch.Generator().manual_seed(123)
    xs = torch.randn(64, 8, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3.0, 64, dtype=torch.float64)[:, None]
    ys = torch.randn(64, generator=g, dtype=torch.float64) * 3
    theta0 = torch.randn(8, generator=g, dtype=torch.float64)
    batch = torch.Generator().manual_seed(1000 + seed)
    rows = torch.randperm(64, generator=batch)[:4]

    def loss(t, idx):
        return 0.5 * ((xs[idx] @ t - ys[idx]) ** 2).mean()

    model = Function(theta0, lambda t: loss(t, model.rows))
    model.rows = torch.arange(64)
    opt = zoo.get(estimator, model, lr=0.0, eps=1e-4, seed=seed, perturbation="exact")
    if estimator == "mezo-svrg":
        opt.step(model)  # the anchor, on the full batch
        with torch.no_grad():
            model.theta.add_(offset)  # a step's worth away from it
    true = torch.func.grad(lambda t: loss(t, torch.arange(64)))(model.theta.detach())
    model.rows = rows
    est = opt.estimate(model, full_closure=None)[0]
    return ((est - true).norm() ** 2 / true.norm() ** 2).item()


def test_mezo_svrg_near_its_anchor_has_lower_variance_than_mezo():
    """Near the anchor the two minibatch terms cancel the minibatch noise, so the estimate has the
    full-batch estimate's error, not the minibatch one's (MeZO-SVRG, arXiv 2404.08080)."""
    offset = torch.full((8,), 1e-3, dtype=torch.float64)
    mezo = [_svrg_error("mezo-sgd", s, offset) for s in range(300)]
    svrg = [_svrg_error("mezo-svrg", s, offset) for s in range(300)]
    assert sum(svrg) / len(svrg) < 0.5 * sum(mezo) / len(mezo), (sum(svrg) / 300, sum(mezo) / 300)


def test_forward_grad_derivative_equals_autograd():
    model = BlockMLP()
    x, y = regression_data()
    closure = lambda: torch.nn.functional.mse_loss(model(x), y)  # noqa: E731
    opt = zoo.get("forward-grad", model, lr=0.0, n=3, seed=2)
    probe = zoo.get("mezo-sgd", model, n=3, seed=2)  # the same keys, to materialise z
    opt.step(closure)
    slots, keys = probe._begin()
    with torch.enable_grad():
        grads = torch.autograd.grad(closure(), [s.param for s in slots])
    for j, key in enumerate(keys):
        exact = sum((g * probe.field.materialize(s, key).double()).sum() for g, s in zip(grads, slots)).item()
        assert opt.last_record[2 * j + 1] == pytest.approx(exact, rel=1e-12, abs=1e-15)
    probe.field.end_step()


# -- query schedule, second closure, bad input -------------------------------------------------------------------------
def test_adazeta_schedule_sets_the_directions_of_each_step():
    from zoo.estimators import QuerySchedule

    schedule = QuerySchedule(beta=1.0, alpha=1.0, n_max=3, every=2)
    assert [schedule(t) for t in range(8)] == [1, 1, 2, 2, 3, 3, 3, 3]
    assert QuerySchedule(beta=0.85, alpha=0.5, n_max=15, every=1)(99) == min(max(math.floor(0.85 * 100**0.5), 1), 15)
    model = tiny_llama()
    hyper = {"query_schedule": {"beta": 1.0, "alpha": 1.0, "n_max": 3, "every": 2}}
    opt = zoo.get("mezo-sgd", model, lr=1e-3, **hyper)
    spec = zoo.estimators.spec("mezo-sgd")
    for t in range(6):
        calls = []
        opt.step(lambda: calls.append(1) or model(**lm_batch()).loss)
        assert len(calls) == 2 * schedule(t) == spec.forwards(t, **hyper) == len(opt.last_record)
    one_sided = zoo.get("one-sided", tiny_llama(), **hyper)
    assert [one_sided.forwards_at(t) for t in range(6)] == [2, 2, 3, 3, 4, 4]


def test_a_scheduled_run_replays_and_resumes_bit_for_bit():
    hyper = {"lr": 1e-3, "seed": 4, "query_schedule": {"beta": 1.0, "alpha": 1.0, "n_max": 3, "every": 2}}
    model = tiny_llama()
    start = snapshot(model)
    opt = zoo.get("mezo-adam", model, **hyper)
    log = []
    for _ in range(5):
        opt.step(lambda: model(**lm_batch()).loss)
        log.append(opt.last_record)
    again = tiny_llama()
    replayed = zoo.get("mezo-adam", again, **hyper)
    for losses in log:
        replayed.replay(losses)
    assert bits_equal(snapshot(again), snapshot(model)) and not bits_equal(start, snapshot(model))


def test_svrg_uses_the_full_closure_on_anchor_steps_only():
    model = tiny_llama()
    opt = zoo.get("mezo-svrg", model, lr=1e-3, q=3)
    mini, full = [], []
    for _ in range(6):
        opt.step(lambda: mini.append(1) or model(**lm_batch()).loss,
                 full_closure=lambda: full.append(1) or model(**lm_batch(seed=9, batch=8)).loss)
    assert len(full) == 2 * 2 and len(mini) == 4 * 4


def test_svrg_keys_anchor_keeps_no_parameter_sized_state_and_follows_the_copy():
    a, b = tiny_llama(torch.float64), tiny_llama(torch.float64)
    copy = zoo.get("mezo-svrg", a, lr=1e-2, q=3, anchor="copy")
    keys = zoo.get("mezo-svrg", b, lr=1e-2, q=3, anchor="keys")
    for t in range(7):
        copy.step(lambda: a(**lm_batch(seed=t)).loss, full_closure=lambda: a(**lm_batch(seed=99, batch=8)).loss)
        keys.step(lambda: b(**lm_batch(seed=t)).loss, full_closure=lambda: b(**lm_batch(seed=99, batch=8)).loss)
    assert keys.extra_state_bytes() == 0 < copy.extra_state_bytes()
    moved = max((p - q).abs().max().item() for p, q in zip(a.parameters(), tiny_llama(torch.float64).parameters()))
    diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    assert moved > 1e-6 and diff < 1e-9 * moved


def test_zo_cons_keeps_the_best_of_its_three_points():
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    model = Function(torch.zeros(3), lambda t: (g * t).sum() + 5.0 * (t**2).sum())
    opt = zoo.get("zo-cons", model, lr=10.0, eps=1e-3, seed=0, perturbation="exact")  # a step that overshoots
    before = model.theta.detach().clone()
    opt.step(model)
    record = opt.last_record  # L(theta), L+, L-, L(theta - lr g_hat), L(theta + lr g_hat)
    assert len(record) == 5 and min(record[0], record[3], record[4]) == record[0]
    assert torch.equal(model.theta.detach(), before)  # neither candidate was better: theta kept
    opt = zoo.get("zo-cons", model, lr=1e-2, eps=1e-3, seed=0, perturbation="exact")
    opt.step(model)
    record = opt.last_record
    assert min(record[3], record[4]) < record[0]
    assert float(model().detach()) == min(record[3], record[4])  # the weights are the candidate that was best


@pytest.mark.parametrize("name,hyper,match", [
    ("zo-cons", {"weight_decay": 0.1}, "weight_decay"),
    ("mezo-svrg", {"anchor": "keys", "weight_decay": 0.1}, "weight_decay"),
    ("mezo-svrg", {"q": 0}, "q:"),
    ("mezo-svrg", {"anchor": "disk"}, "anchor:"),
    ("mezo-svrg", {"anchor_lr_scale": 0}, "anchor_lr_scale"),
    ("hizoo", {"hessian_smooth": 0.0}, "wasted forward"),
    ("hizoo", {"hessian_min": 0.0}, "hessian_min"),
    ("hizoo", {"curvature": "exact"}, "curvature"),
    ("block-zo", {"blocks": 0}, "blocks:"),
    ("zo-momentum", {"momentum": 1.0}, "momentum"),
    ("zo-momentum", {"dampening": -1}, "dampening"),
    ("lozo", {"rank": 0}, "rank"),
    ("mezo-sgd", {"query_schedule": {"beta": 1.0, "n_max": 0}}, "n_max"),
    ("mezo-sgd", {"query_schedule": [1, 2]}, "query_schedule"),
    ("hizoo", {"query_schedule": {"n_max": 3}}, "fixes its own directions"),
])
def test_bad_hyper_parameters_are_one_clear_error(name, hyper, match):
    with pytest.raises(ValueError, match=match):
        zoo.get(name, tiny_llama(), **hyper)


def test_forward_grad_needs_the_model():
    model = tiny_llama()
    with pytest.raises(ValueError, match="nn.Module"):
        zoo.get("forward-grad", list(model.parameters()))


def test_block_zo_perturbs_one_block_per_query():
    """Each pair of forwards moves only its block's parameters; the blocks cover every parameter once."""
    model = tiny_llama(torch.float64)
    opt = zoo.get("block-zo", model, lr=1e-3, perturbation="inplace", blocks=None)
    before = snapshot(model)
    moved = []

    def closure():
        # moved by the perturbation (eps z), not by the way back's rounding (1e-17)
        moved.append(frozenset(i for i, (p, b) in enumerate(zip(model.parameters(), before))
                               if (p - b).abs().max() > 1e-9))
        return model(**lm_batch()).loss

    opt.step(closure)
    blocks = moved[::2]
    assert len(blocks) == 3 == opt.forwards_at(0) // 2  # embeddings and norm, layer 0, layer 1
    assert moved[::2] == moved[1::2] and all(blocks) and sum(len(b) for b in blocks) == len(before)
    assert len(set().union(*blocks)) == len(before)


def test_a_mezo_svrg_run_takes_its_anchor_steps_on_the_whole_training_split(tmp_path, monkeypatch):
    from test_finetune import _setup
    from zoo.estimators import MeZOSVRG
    from zoo.finetune.loop import finetune

    cfg, built, splits = _setup(tmp_path, estimator="mezo-svrg", steps=4, eval_every=4)
    per_step, stepping = [], [False]
    real_step = MeZOSVRG.step

    def step(self, closure, full_closure=None):
        per_step.append([])
        stepping[0] = True
        try:
            return real_step(self, closure, full_closure=full_closure)
        finally:
            stepping[0] = False

    monkeypatch.setattr(MeZOSVRG, "step", step)
    built.model.register_forward_pre_hook(
        lambda m, a, kw: per_step[-1].append(kw["input_ids"].shape[0]) if stepping[0] else None, with_kwargs=True)
    result = finetune(cfg, built, splits, tmp_path / "run", progress=False)
    train, b = len(splits.train), cfg.batch_size
    assert train > b and per_step == [[train] * 2, [b] * 4, [train] * 2, [b] * 4]  # q = 2
    # each pass counts one forward, over whichever batch it ran
    assert result["forward_passes"] == result["model_calls"] == 12


def test_adazeta_is_n_spsa_under_adazetas_own_schedule():
    from zoo.estimators.adazeta import ADAZETA_SCHEDULE

    beta, alpha, n_max, every = (ADAZETA_SCHEDULE[k] for k in ("beta", "alpha", "n_max", "every"))
    assert abs(alpha - math.log(20 / beta) / math.log(160)) < 1e-3  # run.py: alpha = log(NUM/beta)/log(epochs)
    spec = zoo.estimators.spec("adazeta")
    expected = [min(max(math.floor(beta * (t // every + 1) ** alpha), 1), n_max) for t in range(0, 8000, 7)]
    assert [spec.forwards(t, **spec.defaults) for t in range(0, 8000, 7)] == [2 * n for n in expected]
    assert max(expected) == 15 and min(expected) == 1
    # a short schedule so the growth shows inside a test: adazeta then retraces mezo-sgd given the same schedule
    hyper = {"lr": 1e-3, "seed": 3, "query_schedule": {"beta": 1.0, "alpha": 1.0, "n_max": 3, "every": 2}}
    runs = []
    for name in ("adazeta", "mezo-sgd"):
        model = tiny_llama()
        opt = zoo.get(name, model, **hyper)
        records = []
        for t in range(5):
            opt.step(lambda: model(**lm_batch(seed=t)).loss)
            records.append(len(opt.last_record))
        runs.append((records, snapshot(model)))
    assert runs[0][0] == [2, 2, 4, 4, 6] and runs[0][0] == runs[1][0] and bits_equal(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="query_schedule"):
        zoo.get("adazeta", tiny_llama(), n=4)

"""Same seed, same bits; the global RNG changes nothing; resume is bit-exact."""

import io

import pytest
import torch

import zoo
from conftest import SMALL, bits_equal, lm_batch, snapshot, tiny_llama


def run(name, steps, seed=0, use_global_rng=False, **extra):
    model = tiny_llama()
    batch = lm_batch()

    def closure():
        if use_global_rng:
            torch.randn(100)  # e.g. dropout or shuffling inside the closure
        return model(**batch).loss

    opt = zoo.get(name, model, lr=1e-3, eps=1e-3, seed=seed, **{**SMALL.get(name, {}), **extra})
    for _ in range(steps):
        opt.step(closure)
    return model, opt


@pytest.mark.parametrize("name", zoo.available())
def test_same_seed_same_bits_and_global_rng_is_irrelevant(name):
    a, _ = run(name, 4)
    b, _ = run(name, 4, use_global_rng=True)
    c, _ = run(name, 4, seed=1)
    assert bits_equal(snapshot(a), snapshot(b))
    assert not bits_equal(snapshot(a), snapshot(c))


def test_step_leaves_global_rng_untouched():
    model = tiny_llama()
    opt = zoo.get("sparse-mezo", model, lr=1e-3)
    state = torch.random.get_rng_state()
    opt.step(lambda: model(**lm_batch()).loss)
    assert torch.equal(state, torch.random.get_rng_state())


def test_thread_count_and_chunk_size_do_not_change_results():
    a, _ = run("n-spsa", 3, threads=1, chunk_size=1 << 16)
    b, _ = run("n-spsa", 3, threads=2, chunk_size=1 << 20)
    assert bits_equal(snapshot(a), snapshot(b))


@pytest.mark.parametrize("perturbation", ["inplace", "exact"])
@pytest.mark.parametrize("name", zoo.available())
def test_resume_is_bit_exact(name, perturbation):
    full, full_opt = run(name, 6, perturbation=perturbation)

    half, half_opt = run(name, 3, perturbation=perturbation)
    buf = io.BytesIO()
    torch.save({"model": half.state_dict(), "opt": half_opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)

    resumed = tiny_llama(seed=99)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(ckpt["model"])
    opt = zoo.get(name, resumed, lr=5.0, eps=9.0, seed=123, perturbation=perturbation, **SMALL.get(name, {}))
    opt.load_state_dict(ckpt["opt"])
    batch = lm_batch()
    for _ in range(3):
        opt.step(lambda: resumed(**batch).loss)
    assert bits_equal(snapshot(full), snapshot(resumed))
    assert opt.zo_state == full_opt.zo_state
    sa, sb = full_opt.state_dict()["state"], opt.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert bits_equal([v for v in sa[k].values() if torch.is_tensor(v)], [v for v in sb[k].values() if torch.is_tensor(v)])


def test_state_dict_records_backend_and_seed():
    model = tiny_llama()
    opt = zoo.get("mezo-sgd", model, seed=5)
    zo = opt.state_dict()["zo"]
    assert zo["backend"] == opt.backend.name and zo["stream"] == opt.backend.stream.name
    assert zo["backend"] in ("cpu", "torch", "triton") and zo["seed"] == 5 and zo["perturbation"] == "inplace"


def test_load_rejects_mismatched_estimator():
    model = tiny_llama()
    sd = zoo.get("mezo-adam", model).state_dict()
    with pytest.raises(ValueError, match="rule"):
        zoo.get("mezo-sgd", model).load_state_dict(sd)
    with pytest.raises(ValueError, match="zo"):
        zoo.get("mezo-sgd", model).load_state_dict({"state": {}, "param_groups": []})


def test_lr_scheduler_drives_param_groups():
    model = tiny_llama()
    opt = zoo.get("mezo-sgd", model, lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        opt.step(lambda: model(**lm_batch()).loss)
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 8)


def _logged_run(name, steps, perturbation="inplace", nan_at=None):
    """Runs `steps` steps and returns the model, the initial weights and each step's closure losses."""
    model = tiny_llama()
    start = snapshot(model)
    batch = lm_batch()
    opt = zoo.get(name, model, lr=1e-3, eps=1e-3, seed=0, perturbation=perturbation, **SMALL.get(name, {}))
    log, opt.expected_records = [], []
    fail_call = min(2, opt.forwards_at(0))  # the second forward (a one-pass step: its only one)
    for t in range(steps):
        calls = []

        def closure():
            calls.append(1)
            loss = model(**batch).loss
            if t == nan_at and len(calls) == fail_call:
                loss = loss * float("nan")  # this forward fails: the step is skipped
            return loss

        opt.expected_records.append(opt.plan.record_length(t, opt.slots))  # declared before the step
        opt.step(closure)
        log.append(list(opt.last_record))  # the step's record: what replay takes
    return model, start, log, opt


@pytest.mark.parametrize("perturbation", ["inplace", "exact"])
@pytest.mark.parametrize("name", zoo.available())
def test_replaying_the_logged_losses_rebuilds_the_weights_bit_for_bit(name, perturbation):
    trained, start, log, opt = _logged_run(name, 5, perturbation, nan_at=2)
    assert opt.zo_state["skipped_steps"] == 1 and log[2][-1] != log[2][-1]  # the skipped step's record ends at NaN
    assert all(len(log[t]) == opt.expected_records[t] for t in (0, 1, 3, 4))
    model = tiny_llama()
    with torch.no_grad():
        for p, s in zip(model.parameters(), start):
            p.copy_(s)
    replayed = zoo.get(name, model, lr=1e-3, eps=1e-3, seed=0, perturbation=perturbation, **SMALL.get(name, {}))
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    for losses in log:
        replayed.replay(losses)
    assert not calls  # no forward pass
    assert bits_equal(snapshot(model), snapshot(trained))
    assert replayed.zo_state == opt.zo_state
    # the rule's state too: a resumed run goes on from the replayed one as from the original
    assert bits_equal([t for st in replayed.state.values() for t in st.values() if torch.is_tensor(t)],
                      [t for st in opt.state.values() for t in st.values() if torch.is_tensor(t)])


def test_replay_refuses_a_log_of_another_shape_and_touches_nothing():
    _, _, log, _ = _logged_run("n-spsa", 1)  # n=3: six losses per step
    model = tiny_llama()
    opt = zoo.get("n-spsa", model, lr=1e-3, eps=1e-3, seed=0, **SMALL["n-spsa"])
    before = snapshot(model)
    for bad in (log[0][:4], log[0] + [1.0], [float("nan"), *log[0][1:]], []):
        with pytest.raises(ValueError, match="replay: step 0 takes 6 losses"):
            opt.replay(bad)
    assert bits_equal(snapshot(model), before) and opt.zo_state["step"] == 0

"""Data-parallel ZO on 2 CPU processes (gloo): identical replicas, a replayable log, no hang on a failed rank."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import zoo
from conftest import RankDone, run_rank, bits_equal, class_batches, free_port, small_mlp

STEPS = 5


def _model():
    return small_mlp(6, 16)


def _data():
    return class_batches(STEPS, 8, 6)


def _loss(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y)


def _worker(rank, world, port, out, case):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    def body():
        model = _model()
        xs, ys = _data()
        shard = slice(rank * 4, rank * 4 + 4)  # each rank its half of every batch
        if case == "seed":
            errors = []
            for opts in ({"seed": rank}, {"seed": 7, "n": 4, "distributed": "directions", "perturbation": "inplace"}):
                try:
                    zoo.get("n-spsa", model, lr=0.1, eps=1e-2, **opts)
                    errors.append(None)
                except ValueError as e:
                    errors.append(str(e))
            torch.save({"errors": errors}, f"{out}/rank{rank}.pt")
            raise RankDone
        if case.startswith("directions"):
            opts = {"n": 4} if case == "directions" else {}
            name = "n-spsa" if case == "directions" else case.split(":")[1]
            opt = zoo.get(name, model, lr=0.1, eps=1e-2, seed=7, distributed="directions", **opts)
            for step in range(STEPS):  # every rank on the whole batch, its own directions only
                opt.step(lambda: _loss(model, xs[step], ys[step]))
            torch.save({"weights": [p.detach() for p in model.parameters()], "bytes": opt.reducer.bytes_sent,
                        "forwards": opt.zo_state["forward_passes"], "calls": None}, f"{out}/rank{rank}.pt")
            raise RankDone
        opt = zoo.get(case, model, lr=0.1, eps=1e-2, seed=7, distributed_timeout=3.0)
        records, error, before = [], None, None
        for step in range(STEPS):
            x, y = xs[step][shard], ys[step][shard]
            try:
                if step == 2 and out.endswith("fail"):
                    before = [p.detach().clone() for p in model.parameters()]
                    calls = [0]

                    def closure():
                        calls[0] += 1
                        if rank == 1 and calls[0] == 2:
                            raise RuntimeError("this rank's data loader broke")
                        return _loss(model, x, y)

                    opt.step(closure)
                else:
                    opt.step(lambda: _loss(model, x, y))
                records.append(list(opt.last_record))
            except RuntimeError as e:
                error = str(e)
                break
        torch.save({"weights": [p.detach() for p in model.parameters()], "records": records, "error": error,
                    "before": before, "bytes": opt.reducer.bytes_sent, "world": opt.reducer.world},
                   f"{out}/rank{rank}.pt")
    run_rank(body)


def _launch(tmp_path, case, name="run"):
    out = tmp_path / name
    out.mkdir()
    mp.spawn(_worker, args=(2, free_port(), str(out), case), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("estimator", ["mezo-sgd", "mezo-adam", "forward-grad"])
def test_two_ranks_stay_identical_replay_in_one_process_and_match_the_full_batch(tmp_path, estimator):
    ranks = _launch(tmp_path, estimator)
    assert all(r["error"] is None for r in ranks)
    assert bits_equal(ranks[0]["weights"], ranks[1]["weights"])
    assert ranks[0]["records"] == ranks[1]["records"]  # every rank used the same (reduced) losses
    assert ranks[0]["bytes"] == 8 * sum(len(r) for r in ranks[0]["records"])  # one float64 a value
    # one process replays the logged losses bit for bit
    model = _model()
    opt = zoo.get(estimator, model, lr=0.1, eps=1e-2, seed=7)
    assert opt.reducer is None
    for record in ranks[0]["records"]:
        opt.replay(record)
    assert bits_equal(list(model.parameters()), ranks[0]["weights"])
    # and a single process on the whole batch follows the same path up to the rounding of the losses
    model = _model()
    opt = zoo.get(estimator, model, lr=0.1, eps=1e-2, seed=7)
    xs, ys = _data()
    for step in range(STEPS):
        opt.step(lambda: _loss(model, xs[step], ys[step]))
    for p, q in zip(model.parameters(), ranks[0]["weights"]):
        torch.testing.assert_close(p.detach(), q, rtol=1e-4, atol=1e-5)


def test_a_rank_that_raises_mid_step_leaves_no_rank_hanging_or_perturbed(tmp_path):
    ranks = _launch(tmp_path, "mezo-sgd", name="fail")
    assert "data loader broke" in ranks[1]["error"]
    assert "no answer from the other ranks within 3 s" in ranks[0]["error"] and "rank 0 of 2" in ranks[0]["error"]
    for r in ranks:  # step 2 undone on both: the in-place way back, up to its rounding (eps z is ~1e-2)
        assert len(r["records"]) == 2
        for p, q in zip(r["weights"], r["before"]):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["directions", "directions:hizoo", "directions:one-sided"])
def test_directions_split_among_two_ranks_equal_one_process_bit_for_bit(tmp_path, case):
    ranks = _launch(tmp_path, case, name=case.replace(":", "-"))
    name, opts = ("n-spsa", {"n": 4}) if case == "directions" else (case.split(":")[1], {})
    model = _model()
    opt = zoo.get(name, model, lr=0.1, eps=1e-2, seed=7, perturbation="exact", **opts)
    xs, ys = _data()
    for step in range(STEPS):
        opt.step(lambda: _loss(model, xs[step], ys[step]))
    for r in ranks:
        assert bits_equal(r["weights"], list(model.parameters()))
        assert r["forwards"] == opt.zo_state["forward_passes"]
    per_step = opt.zo_state["forward_passes"] // STEPS
    assert ranks[0]["bytes"] == 8 * per_step * STEPS  # one all-reduce of the step's values


def test_ranks_with_different_seeds_and_split_directions_in_place_are_refused(tmp_path):
    for r in _launch(tmp_path, "seed"):
        seeds, in_place = r["errors"]
        assert seeds and "seed: the ranks disagree" in seeds
        assert in_place and "needs perturbation='exact'" in in_place and "drift apart" in in_place


def test_bad_distributed_options_are_refused_in_one_process():
    model = _model()
    with pytest.raises(ValueError, match="needs torch.distributed initialised"):
        zoo.get("mezo-sgd", model, distributed="data")
    with pytest.raises(ValueError, match="distributed='directions' needs torch.distributed initialised"):
        zoo.get("mezo-sgd", model, distributed="directions")
    with pytest.raises(ValueError, match="must be None"):
        zoo.get("mezo-sgd", model, distributed="tensor")
    with pytest.raises(ValueError, match="distributed_timeout"):
        zoo.get("mezo-sgd", model, distributed_timeout=0)
    assert zoo.get("mezo-sgd", model, distributed=False).reducer is None


def test_torchrun_finetune_records_its_world_and_one_process_rebuilds_its_weights(tmp_path, capsys):
    import json
    import subprocess
    import sys

    from conftest import tiny_model_folder
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    common = ["--model", str(folder), "--task", str(data), "--k", "4", "--quiet"]
    train = [*common, "--steps", "4", "--batch-size", "4", "--lr", "0.01", "--eps", "0.01", "--eval-every", "2"]
    out = tmp_path / "ranks2"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "zoo", "finetune", *train, "--out", str(out)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("test accuracy") == 1 and "on 2 ranks" in done.stdout
    r = json.loads((out / "results.json").read_text())
    assert r["world_size"] == 2 and r["forward_passes"] == 8
    # one process, from the logged (reduced) losses alone: the same weights (fingerprint-checked)
    assert not (out / "checkpoint.pt").exists() or (out / "checkpoint.pt").unlink() is None
    assert main(["eval", *common, "--run", str(out), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["accuracy"] == r["metrics"]["accuracy"]
    # and a one-process run on whole batches follows the ranks' losses up to rounding
    assert main(["finetune", *train, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert one["world_size"] == 1
    assert one["history"]["loss"] == pytest.approx(r["history"]["loss"], rel=1e-5)
    capsys.readouterr()
    assert main(["finetune", *train, "--estimator", "adam", "--out", str(tmp_path / "fo")]) == 0  # one process: fine


def test_what_a_data_parallel_run_cannot_do_is_refused_in_one_line():
    from zoo.finetune.ranks import check_data_parallel

    check_data_parallel("adam", True, 5, 1)  # one process: anything goes
    with pytest.raises(ValueError, match="first-order baselines run in one process"):
        check_data_parallel("adam", True, 4, 2)
    with pytest.raises(ValueError, match="--batch-size 5 does not split evenly over 2 ranks"):
        check_data_parallel("mezo-sgd", False, 5, 2)


def test_zoo_finetune_destroys_the_process_group_it_created(tmp_path):
    """Left to interpreter teardown a gloo group can deadlock the exit (zoo/finetune/ranks.py:close_group)."""
    import subprocess
    import sys

    from conftest import tiny_model_folder

    folder, data = tiny_model_folder(tmp_path)
    args = ["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "2",
            "--batch-size", "4", "--lr", "0.01", "--eval-every", "2", "--out", str(tmp_path / "run")]
    script = (f"import torch.distributed as dist, zoo.cli; code = zoo.cli.main({args!r}); "
              "import os, sys; sys.stdout.write(f'exit {code} still initialised {dist.is_initialized()}\\n'); "
              "sys.stdout.flush()")  # one write per rank: print's pieces interleave between the ranks
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "--no-python", sys.executable, "-c", script],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("exit 0 still initialised False") == 2, done.stdout[-2000:]

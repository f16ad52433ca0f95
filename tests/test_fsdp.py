"""FSDP2 `fully_shard` on 2 CPU ranks (gloo): each rank perturbs its own shard, keyed by global element index."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import zoo
from conftest import RankDone, run_rank, class_batches, free_port, small_mlp, tiny_llama
from zoo.perturb.keys import BLOCK_SIZE

STEPS = 4
ESTIMATORS = ["mezo-sgd", "mezo-adam", "hizoo"]


def _model():
    # Linear(7, 5): rank 1's shard of the weight begins at element 21, inside a noise block
    return small_mlp(7, 5)


def _batches():
    return class_batches(STEPS, 8, 7)


def _worker(rank, port, out, case):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)

    def body():
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (2,))
        if case == "hf-llama":  # the README's recipe on a transformers model: each block, then the root
            model = tiny_llama()
            for block in model.model.layers:
                fully_shard(block, mesh=mesh)
            fully_shard(model, mesh=mesh)
            opt = zoo.get("mezo-sgd", model, lr=1e-2, eps=1e-2, seed=5)
            ids = _token_batches()
            losses = [float(opt.step(lambda: model(input_ids=ids[step], labels=ids[step]).loss))
                      for step in range(STEPS)]
            torch.save({"losses": losses, "weights": [p.full_tensor() for p in model.parameters()],
                        "local": sum(s.param.numel() for s in opt.slots)}, f"{out}/rank{rank}.pt")
            raise RankDone
        model = _model()
        fully_shard(model[0], mesh=mesh)
        fully_shard(model, mesh=mesh)  # the root holds the last Linear
        if case == "refusals":
            errors = {}
            for name, opts in (("mezo-sgd", {"perturbation": "exact"}), ("sparse-mezo", {}), ("subzero", {}),
                               ("forward-grad", {})):
                try:
                    zoo.get(name, model, **opts)
                except ValueError as e:
                    errors[name] = str(e)
            torch.save(errors, f"{out}/rank{rank}.pt")
            raise RankDone
        opt = zoo.get(case, model, lr=0.05, eps=1e-2, seed=5)
        slots, keys = opt._begin()  # the first step's directions, drawn on this rank's shards
        z = {s.uid: (s.offset, opt.field.materialize(s, keys[0]).clone()) for s in slots}
        opt.field.end_step()
        xs, ys = _batches()
        losses = []
        for step in range(STEPS):  # the same batch on both ranks: the run is the one-process run
            losses.append(float(opt.step(lambda: torch.nn.functional.cross_entropy(model(xs[step]), ys[step]))))
        full = [p.full_tensor() for p in model.parameters()]
        local = sum(s.param.numel() for s in opt.slots)
        torch.save({"z": z, "losses": losses, "weights": full, "local": local}, f"{out}/rank{rank}.pt")
    run_rank(body)


def _token_batches():
    return torch.randint(2, 128, (STEPS, 4, 12), generator=torch.Generator().manual_seed(3))


def _launch(tmp_path, case):
    mp.spawn(_worker, args=(free_port(), str(tmp_path), case), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_sharded_run_is_the_unsharded_run_and_its_z_the_unsharded_z(tmp_path, estimator):
    ranks = _launch(tmp_path, estimator)
    model = _model()
    opt = zoo.get(estimator, model, lr=0.05, eps=1e-2, seed=5)
    slots, keys = opt._begin()
    whole = {s.uid: opt.field.materialize(s, keys[0]).reshape(-1) for s in slots}
    opt.field.end_step()
    offsets = set()
    for r in ranks:
        for uid, (offset, z) in r["z"].items():
            offsets.add(offset)
            assert torch.equal(z.reshape(-1), whole[uid][offset:offset + z.numel()])  # bit for bit
    assert any(o % BLOCK_SIZE for o in offsets)  # a shard began inside a noise block
    xs, ys = _batches()
    losses = []
    for step in range(STEPS):
        losses.append(float(opt.step(lambda: torch.nn.functional.cross_entropy(model(xs[step]), ys[step]))))
    assert ranks[0]["losses"] == ranks[1]["losses"] == losses
    for r in ranks:
        for p, q in zip(model.parameters(), r["weights"]):
            assert torch.equal(p.detach(), q)
    total = sum(p.numel() for p in model.parameters())
    assert ranks[0]["local"] + ranks[1]["local"] == total and max(r["local"] for r in ranks) < total


def test_what_cannot_run_on_shards_is_refused_with_the_reason(tmp_path):
    for errors in _launch(tmp_path, "refusals"):
        assert set(errors) == {"mezo-sgd", "sparse-mezo", "subzero", "forward-grad"}
        assert "perturbation='exact'" in errors["mezo-sgd"] and "magnitude masks" in errors["sparse-mezo"]
        assert "low-rank subspace" in errors["subzero"] and "forward gradients" in errors["forward-grad"]
        assert all("is sharded (FSDP2/DTensor)" in e for e in errors.values())


def test_the_readme_recipe_on_a_transformers_llama_equals_the_unsharded_run(tmp_path):
    """fully_shard on each decoder block and on the root (tied embeddings live there), as the README shows."""
    ranks = _launch(tmp_path, "hf-llama")
    model = tiny_llama()
    opt = zoo.get("mezo-sgd", model, lr=1e-2, eps=1e-2, seed=5)
    ids = _token_batches()
    losses = [float(opt.step(lambda: model(input_ids=ids[step], labels=ids[step]).loss)) for step in range(STEPS)]
    assert ranks[0]["losses"] == ranks[1]["losses"] == losses
    for r in ranks:
        assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), r["weights"]))
    total = sum(p.numel() for p in model.parameters())
    assert ranks[0]["local"] + ranks[1]["local"] == total and max(r["local"] for r in ranks) < total

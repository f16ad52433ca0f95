"""GPU checks: skipped cleanly on machines without CUDA."""

import pytest
import torch

import zoo
from conftest import bits_equal, lm_batch, snapshot, tiny_llama

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_exact_restore_on_gpu(dtype):
    model = tiny_llama(dtype).cuda()
    batch = {k: v.cuda() for k, v in lm_batch().items()}
    before = snapshot(model)
    opt = zoo.get("mezo-sgd", model, lr=0.0, perturbation="exact")
    for _ in range(10):
        opt.step(lambda: model(**batch).loss)
    assert bits_equal(before, snapshot(model))


def test_same_seed_same_bits_on_gpu():
    runs = []
    for _ in range(2):
        model = tiny_llama().cuda()
        batch = {k: v.cuda() for k, v in lm_batch().items()}
        opt = zoo.get("n-spsa", model, n=2, lr=1e-3)
        for _ in range(3):
            opt.step(lambda: model(**batch).loss)
        runs.append(snapshot(model))
    assert bits_equal(*runs)
    assert not bits_equal(runs[0], snapshot(tiny_llama().cuda()))

"""GPU checks: skipped cleanly on machines without CUDA."""

import pytest
import torch

import zoo
from conftest import bits_equal, check_masked_sweep, lm_batch, snapshot, tiny_llama

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


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_streamed_exact_on_gpu_restores_and_matches_held(dtype):
    """Row-blocked Embedding/LM head on CUDA: weights restored bit for bit; in float64 the
    estimate equals the held-whole mode's (a stream of unperturbed blocks would not)."""
    vocab = 4100
    batch = {k: v.cuda() for k, v in lm_batch(vocab=vocab).items()}
    estimates = []
    for block in (1, 0):
        model = tiny_llama(dtype, vocab=vocab).cuda()
        before = snapshot(model)
        opt = zoo.get("mezo-sgd", model, lr=0.0, eps=1e-3, perturbation="exact", exact_block=block, seed=2)
        assert len(opt.perturbation._streamed) == (2 if block else 0)
        estimates.append(opt.estimate(lambda: model(**batch).loss))
        for _ in range(5):
            opt.step(lambda: model(**batch).loss)
        assert bits_equal(before, snapshot(model))
    if dtype == torch.float64:
        for ga, gb in zip(*estimates):
            torch.testing.assert_close(ga, gb, rtol=1e-8, atol=1e-10)


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


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_triton_on_gpu_draws_the_c_kernels_stream(distribution):
    from zoo.perturb.kernels import cpu, triton_ops

    if not (cpu.available() and triton_ops.available("cuda")):
        pytest.skip("needs the C kernel and triton on the GPU machine")
    n, start, seed = 3 * 4096 + 11, 4096 * 2, 12345
    gpu = triton_ops.fill_(torch.empty(n, device="cuda"), start, seed, distribution).cpu()
    host = cpu.fill_(torch.empty(n), start, seed, distribution)
    ulps = (gpu.view(torch.int32).long() - host.view(torch.int32).long()).abs()
    # same Philox integers; libdevice log/cos/sin and sqrt.approx differ by a few ulp at most
    assert ulps.max() <= (0 if distribution == "rademacher" else 8)


def test_auto_backend_on_gpu_is_triton_and_resumes_on_cpu():
    from zoo.perturb.kernels import triton_ops

    if not triton_ops.available("cuda"):
        pytest.skip("triton is not installed on the GPU machine")
    model = tiny_llama().cuda()
    opt = zoo.get("mezo-sgd", model)
    assert opt.backend.name == "triton"
    zoo.get("mezo-sgd", tiny_llama(), backend="cpu").load_state_dict(opt.state_dict())  # one stream


def test_cost_probe_on_gpu_counts_cuda_memory():
    """The gpu preset's probe on CUDA: peak from the caching allocator, and a MeZO step's peak
    at most 1% over two inference forwards' (MeZO section 2), Adam's well above it."""
    from zoo.bench import cost

    spec = {"config": {"model_type": "llama", "vocab_size": 1024, "hidden_size": 256, "intermediate_size": 512,
                       "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2},
            "dtype": "bfloat16", "batch": 4, "seq": 32, "rounds": 2, "device": "cuda"}
    rows = {m: cost.probe({**spec, "method": m}) for m in ("inference", "mezo-sgd", "adam")}
    assert all(r["measure"] == "torch.cuda.max_memory_allocated" for r in rows.values())
    assert rows["mezo-sgd"]["peak_bytes"] <= 1.01 * rows["inference"]["peak_bytes"]
    assert rows["adam"]["peak_bytes"] > 1.5 * rows["inference"]["peak_bytes"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_masked_kernel_on_gpu_equals_the_unfused_sparse_sweep(dtype):
    from zoo.perturb.kernels import triton_ops

    if not triton_ops.available("cuda"):
        pytest.skip("triton is not installed on the GPU machine")
    check_masked_sweep("triton", dtype, "cuda")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_finetune_and_eval_of_its_run_on_the_gpu(tmp_path, dtype):
    """`--device cuda` moves the model and every batch; the step-0 evaluation matches the CPU's, and
    `zoo eval --run` rebuilds the run on the GPU to its own test loss."""
    import json

    from zoo.cli import main
    from conftest import tiny_model_folder

    folder, data = tiny_model_folder(tmp_path)
    runs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert main(["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "6",
                     "--batch-size", "4", "--lr", "0.5", "--tuning", "lora", "--dtype", dtype, "--device", device,
                     "--out", str(out)]) == 0
        runs[device] = json.loads((out / "results.json").read_text())
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert gpu["config"]["device"] == "cuda" and gpu["peak_memory_scope"] == "run" and gpu["peak_memory_bytes"] > 0
    assert cpu["call_cost_tokens"] == 64 and gpu["call_cost_tokens"] is None  # whole batches on the GPU
    assert gpu["history"]["evals"][0]["dev_loss"] == pytest.approx(cpu["history"]["evals"][0]["dev_loss"], rel=2e-2)
    (tmp_path / "cuda" / "checkpoint.pt").unlink()  # rebuilt by replaying the logged losses on the GPU
    assert main(["eval", "--run", str(tmp_path / "cuda"), "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["config"]["device"] == "cuda"
    assert e["metrics"]["loss"] == pytest.approx(gpu["metrics"]["test_loss"], rel=1e-5)

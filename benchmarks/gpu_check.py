"""One call on a lent GPU: checks the Triton kernel and times the issue's GPU targets.

    python benchmarks/gpu_check.py --out DIR            # on the GPU machine (device tool)
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --tiny --out /tmp/g   # the logic, on a CPU

It writes DIR/gpu_check.json with:
- z from the Triton kernel on the GPU against the C kernel on the host CPU (Rademacher bit for bit,
  Gaussian max ulp);
- on a 1B-class Llama config (hidden 2048, 16 layers, 32 heads, 8 kv heads, intermediate 8192,
  vocab 128256, random init, bfloat16) at batch 16 x 64: two inference forwards, a `mezo-sgd` step on
  the `triton` and `torch` backends and the original MeZO step (medians), the step / forwards ratios
  (target <= 1.05), peak `torch.cuda.max_memory_allocated` of a step against inference (<= 1.01);
  those steps perturb in place (MeZO's arithmetic); the step with the estimators' default for
  bfloat16 weights (`exact`, large weights streamed in 4M-element row blocks) is timed and sized
  beside them, with the exact mode holding every module whole and with 64M-element blocks;
- one sweep's bandwidth (read + write of every weight) against a device-to-device copy (>= 80%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zoo  # noqa: E402
from zoo.perturb import DirectionKey, apply_  # noqa: E402
from zoo.perturb.kernels import cpu, triton_ops  # noqa: E402


#: the exact-mode steps timed and sized beside MeZO's in-place step: the estimators' default (exact for
#: bfloat16, 4M-element blocks), every module held whole, and 64M-element blocks
EXACT_VARIANTS = {"default": {}, "exact_whole": {"perturbation": "exact", "exact_block": 0},
                  "exact_block64m": {"perturbation": "exact", "exact_block": 1 << 26}}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median(fn, device, rounds):
    fn()
    _sync(device)
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def stream_check(device) -> dict:
    n, start, seed = 3 * 4096 + 123, 4096 * 7, (1 << 61) + 99
    out = {}
    for dist in ("gaussian", "rademacher"):
        tri = triton_ops.fill_(torch.empty(n, device=device), start, seed, dist).cpu()
        if not cpu.available():
            out[dist] = {"c_kernel": "unavailable: " + cpu.unavailable_reason()}
            continue
        ref = cpu.fill_(torch.empty(n), start, seed, dist)
        ulps = (tri.view(torch.int32).long() - ref.view(torch.int32).long()).abs()
        out[dist] = {"max_ulp": int(ulps.max()), "exact_fraction": float((ulps == 0).float().mean())}
    return out


def model_and_batch(tiny: bool, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    if tiny:
        cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2)
        batch, seq = 2, 8
    else:
        cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                          num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True)
        batch, seq = 16, 64
    dtype = torch.float32 if tiny else torch.bfloat16
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    model.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g).to(device)
    return model, {"input_ids": ids, "labels": ids}, dtype


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tiny", action="store_true", help="a tiny model, to check the script's logic")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (interpreter)",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    report["stream"] = stream_check(device)
    model, batch, dtype = model_and_batch(args.tiny, device)
    report["params"] = sum(p.numel() for p in model.parameters())
    report["dtype"] = str(dtype)
    closure = lambda: model(**batch).loss  # noqa: E731
    med = {}
    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        med["two_forwards"] = _median(lambda: (closure(), closure()), device, args.rounds)
        infer_peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
        for backend in ("triton", "torch"):
            # MeZO's in-place arithmetic, as the original step below; bfloat16 would default to exact
            opt = zoo.get("mezo-sgd", model, lr=1e-9, eps=1e-3, backend=backend, perturbation="inplace")
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            med[f"step_{backend}"] = _median(lambda: opt.step(closure), device, args.rounds)
            report[f"peak_step_{backend}_over_inference"] = (
                torch.cuda.max_memory_allocated() / infer_peak if device.type == "cuda" else None)
            slots, key = opt._slots, DirectionKey(1, 0)
            coefs = {s.uid: 1e-9 for s in slots}
            med[f"sweep_{backend}"] = _median(
                lambda: apply_(opt.backend, opt.field, slots, [(key, coefs)], at_theta=True), device, args.rounds)
        # the default for these bfloat16 weights (exact): small modules saved, perturbed and restored in
        # their forward, large Linear/Embedding weights streamed as perturbed row-block copies; beside it
        # the same mode with every module held whole and with 16x larger blocks (fewer, larger launches)
        for label, options in EXACT_VARIANTS.items():
            opt = zoo.get("mezo-sgd", model, lr=1e-9, eps=1e-3, **options)
            report[f"{label}_perturbation"] = opt.perturbation.name
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            med[f"step_{label}"] = _median(lambda: opt.step(closure), device, args.rounds)
            report[f"peak_step_{label}_over_inference"] = (
                torch.cuda.max_memory_allocated() / infer_peak if device.type == "cuda" else None)
            report[f"{label}_saved_bytes"] = getattr(opt.perturbation, "peak_saved_bytes", None)
        from mezo_original import MeZOOriginal

        orig = MeZOOriginal(model.parameters(), lr=1e-9, eps=1e-3)
        med["original_step"] = _median(lambda: orig.step(closure), device, args.rounds)
        params = list(model.parameters())
        copies = [torch.empty_like(p) for p in params]
        med["copy"] = _median(lambda: [c.copy_(p) for c, p in zip(copies, params)], device, args.rounds)
        copies.clear()  # frees the copies now, before the report is built
    report["medians_s"] = med
    report["ratios"] = {
        "step_triton_over_two_forwards": med["step_triton"] / med["two_forwards"],
        "step_torch_over_two_forwards": med["step_torch"] / med["two_forwards"],
        **{f"step_{label}_over_two_forwards": med[f"step_{label}"] / med["two_forwards"] for label in EXACT_VARIANTS},
        "step_triton_over_original": med["step_triton"] / med["original_step"],
        "sweep_bandwidth_over_copy": med["copy"] / med["sweep_triton"],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bytes a rank puts into torch.distributed per ZO step, and the time the reductions take (issue 29).

Two ranks on this CPU (gloo), a 2-block random-init Llama built from SmolLM2-135M's config (small enough
to run in seconds, the same code path), 8 steps of each estimator in each distributed mode. Payload
bytes are what `LossReducer.bytes_sent` counts: the float64 values handed to all-reduce. Compare them
with data-parallel first-order training, which all-reduces every gradient: 4 bytes a parameter.

    python benchmarks/comm_bytes.py --out docs/comm_bytes.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = [("mezo-sgd", {}, "data"), ("n-spsa", {"n": 4}, "data"), ("hizoo", {}, "data"),
         ("n-spsa", {"n": 4}, "directions"), ("mezo-sgd", {}, "directions")]
STEPS = 8


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=2,
                      num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).eval()


def _worker(rank, port, out):
    import zoo

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rows = []
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 49152, (8, 32), generator=g)
    for name, opts, mode in CASES:
        model = _model()
        opt = zoo.get(name, model, lr=1e-6, eps=1e-3, seed=0, distributed=mode, **opts)
        batch = ids if mode == "directions" else ids[rank * 4:(rank + 1) * 4]
        spent = [0.0]
        real = opt.reducer.sum

        def timed(values, what, real=real):
            t = time.perf_counter()
            try:
                return real(values, what)
            finally:
                spent[0] += time.perf_counter() - t

        opt.reducer.sum = timed
        t0 = time.perf_counter()
        for _ in range(STEPS):
            opt.step(lambda: model(input_ids=batch, labels=batch).loss)
        wall = time.perf_counter() - t0
        rows.append({"estimator": name, "options": opts, "mode": mode, "steps": STEPS,
                     "bytes_per_step": opt.reducer.bytes_sent / STEPS,
                     "forwards_per_step": opt.zo_state["forward_passes"] / STEPS,
                     "reduce_ms_per_step": 1000 * spent[0] / STEPS, "step_s": wall / STEPS,
                     "params": sum(p.numel() for p in model.parameters())})
    if rank == 0:
        torch.save(rows, out)
    dist.destroy_process_group()


def main():
    import json
    import socket

    from zoo.files import write_json
    from zoo.provenance import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/comm_bytes.json")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(args.out).with_suffix(".tmp.pt")
    mp.spawn(_worker, args=(port, str(tmp)), nprocs=2, join=True)
    rows = torch.load(tmp)
    tmp.unlink()
    write_json(args.out, {"command": "python benchmarks/comm_bytes.py --out " + args.out, "measured": {
        **machine(), "date": time.strftime("%Y-%m-%d"), "world_size": 2, "backend": "gloo"}, "rows": rows}, indent=1)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()

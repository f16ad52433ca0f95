"""What the demo can reach: a first-order linear probe on the same frozen features.

The demo (`zoo demo`) trains a linear head on mean-pooled all-MiniLM-L6-v2
features with forward passes only. This script fits the same head with
full-batch L-BFGS (backprop) on the same k-shot SST-2 sample and reports dev
accuracy, so the demo's number can be read against a first-order ceiling.

    python benchmarks/demo_probe_ceiling.py
"""

from __future__ import annotations

import torch

from zoo import demo


def main(seed: int = 0):
    data = demo.default_data_dir()
    rows = demo.read_sst2(data / "glue-sst2" / "train_full.tsv")
    dev = demo.read_sst2(data / "glue-sst2" / "dev.tsv")
    encoder, tok = demo.load_minilm()

    @torch.no_grad()
    def features(rs):
        e = tok([s for s, _ in rs], padding=True, truncation=True, max_length=64, return_tensors="pt")
        h = encoder(**e).last_hidden_state
        m = e["attention_mask"].unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1)

    xd, yd = features(dev), torch.tensor([y for _, y in dev])
    for k in (16, 64, 256):
        sample = demo.k_shot(rows, k, seed)
        x, y = features(sample), torch.tensor([b for _, b in sample])
        w = torch.zeros(x.shape[1], 2, requires_grad=True)
        b = torch.zeros(2, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w + b, y)
            loss.backward()
            return loss

        opt.step(closure)
        acc = ((xd @ w + b).argmax(-1) == yd).float().mean().item()
        print(f"k={k:4d} per class, seed {seed}: first-order linear probe dev accuracy {acc:.3f}")


if __name__ == "__main__":
    main()

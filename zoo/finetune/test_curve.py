"""Test accuracy at each dev evaluation of a finished ZO run, rebuilt afterwards from its logged losses.

A run scores the test split once, at the end (MeZO's protocol); `finetune(test_curve=True)`
scores it at every dev evaluation as it goes. A ZO run finished without that still has its
curve: replaying its first s logged steps rebuilds the weights of step s bit for bit
(trajectory.py), so scoring them gives the test accuracy the run would have recorded at s. The
last point is the run's own final test accuracy; the replay's final fingerprint check vouches
for every point before it. A first-order run logs no losses and cannot be replayed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..provenance import machine
from .evaluate import evaluate
from .loop import FIRST_ORDER, FinetuneConfig, build_optimizer, completed_config
from .runs import logged_losses
from .trajectory import TrajectoryLog, weights_fingerprint
from ..files import read_json, write_json


def has_test_curve(result: dict) -> bool:
    """Whether every dev evaluation of the run also holds a test accuracy."""
    evals = result["history"]["evals"]
    return bool(evals) and all("test_accuracy" in e for e in evals)


def can_replay(result: dict) -> bool:
    """Whether the run's weights can be rebuilt from its results.json (a ZO run that logged its losses)."""
    return (result["config"]["estimator"] not in FIRST_ORDER and "step_losses" in result["history"]
            and "weights_fingerprint" in result)


def _start_key(result: dict, test) -> str:
    """What the step-0 test accuracy depends on: the starting weights, the model, how it scores, the test set."""
    c = result["config"]
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([result["weights_fingerprint"]["start"], c["model"], c["mode"], c["tuning"], c["template"],
                         c["max_length"], c["dtype"], c["device"]]).encode())
    for e in test:
        h.update(json.dumps([e.text, e.text_b, e.label]).encode())
    return h.hexdigest()


def _score(model, scorer, test) -> tuple[float, float]:
    m = evaluate(model, scorer, test)
    return m["accuracy"], m["loss"]


def add_test_curve(out: str | Path, built, splits, progress: bool = False, at_start: dict | None = None) -> dict:
    """Scores `splits.test` at each dev evaluation of the finished ZO run in `out`; rewrites its results.json.

    Each evaluation's record gets `test_accuracy` and `test_loss`, as `finetune(test_curve=True)`
    writes them; results.json is rewritten only once every point is scored and the replay has
    rebuilt the run's final weights.

    Args:
        out: the run's folder (its results.json has the logged losses).
        built: the model and scorer, built as the run built them, at their initial weights.
        splits: the run's splits (only the test split is scored).
        progress: a bar over the replayed steps.
        at_start: a cache of step-0 test accuracies shared across calls: runs that start from the
            same weights and score the same test set share that point, e.g. every seed and
            estimator of a prompt-based suite.

    Returns:
        The updated results.

    Raises:
        ValueError: the run is first-order, or its log does not rebuild its weights.
    """
    path = Path(out) / "results.json"
    result = read_json(path)
    if has_test_curve(result):
        return result
    if not can_replay(result):
        raise ValueError(f"{path}: a {result['config']['estimator']} run logs no losses to replay; its test "
                         "curve can only be scored during the run (zoo finetune --test-curve)")
    cfg = FinetuneConfig(**completed_config(result["config"]))
    model, scorer = built.model, built.scorer
    if weights_fingerprint(model) != result["weights_fingerprint"]["start"]:
        raise ValueError(f"{path}: the model's initial weights differ from the run's; its steps cannot be replayed")
    evals = result["history"]["evals"]
    wanted = {e["step"] for e in evals}
    # the run's own final test pass, on these weights
    scored = {cfg.steps: (result["metrics"]["accuracy"], result["metrics"]["test_loss"])}
    at_start = {} if at_start is None else at_start
    if 0 in wanted:
        key = _start_key(result, splits.test)
        if key not in at_start:
            at_start[key] = _score(model, scorer, splits.test)
        scored[0] = at_start[key]

    def on_step(step):
        if step in wanted and step not in scored:
            scored[step] = _score(model, scorer, splits.test)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(cfg, params, model, stream=result.get("noise_stream"))
    log = logged_losses(Path(out))
    TrajectoryLog(Path(out)).replay(log, model, opt, progress=progress, on_step=on_step, source=log["source"])
    for e in evals:
        e["test_accuracy"], e["test_loss"] = scored[e["step"]]
    result["test_curve"] = {"source": "replayed from the logged losses", "measured": machine()}
    write_json(path, result, indent=1)
    return result

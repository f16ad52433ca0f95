"""Runs a suite: every training run and baseline, each into its own folder, resumable."""

from __future__ import annotations

from pathlib import Path

from ..progress import progress as tqdm_bar

from ..finetune.commands import prepare_run, run_eval, run_finetune
from ..finetune.lock import claimed
from ..finetune.loop import FinetuneConfig
from ..finetune.test_curve import add_test_curve, can_replay, has_test_curve
from ..placement import dtype_of
from ..provenance import machine
from . import fixtures
from .selection import Selection
from .suite import RunSpec, Suite, model_label, task_label, template_for
from ..files import read_json, write_json


def _config(suite: Suite, spec: RunSpec, root: Path) -> FinetuneConfig:
    m = spec.model
    return FinetuneConfig(
        model=fixtures.resolve(m["model"], root), task=fixtures.resolve(spec.task, root), estimator=spec.estimator,
        steps=spec.steps, k=suite.k, seed=spec.seed, lr=spec.lr, eps=spec.eps or 1e-3, batch_size=suite.batch_size,
        mode=m.get("mode", "prompt"), tuning=m.get("tuning", "full"), template=template_for(m, spec.task),
        eval_every=max(spec.steps // max(suite.evals, 1), 1), test_limit=suite.test_limit,
        checkpoint_every=max(spec.steps // 4, 1), dtype=m.get("dtype", "float32"), device=m.get("device", "cpu"),
        blocks=m.get("blocks"), activation_cache=m.get("activation_cache", True),
        tuning_options=m.get("tuning_options", {}),
    )


def not_counted(result: dict) -> bool:
    """A run whose row counter saw no model call although it trained: top-block runs on cached activations
    finished before 2026-12-04's fix, whose scorer called the blocks and the LM head but never the model
    object the counter hooked. Their forwards were run (their losses are logged) but not counted."""
    return result.get("model_calls") == 0 and result.get("config", {}).get("tuning") == "blocks" and bool(
        result.get("history", {}).get("loss"))


def check_forward_count(spec: RunSpec, result: dict) -> str | None:
    """None when the model ran exactly the forwards the estimator declares; else what differs."""
    expected = spec.declared_forwards
    counted = result.get("model_calls")
    if counted is None or counted == expected or not_counted(result):
        return None
    return (f"{spec.estimator} (lr {spec.lr:g}, seed {spec.seed}): declared {spec.forwards_per_step:g} forwards x "
            f"{spec.steps} steps = {expected}, the model ran {counted}")


def _baseline(suite: Suite, model: dict, task: str, seed: int, kind: str, root: Path,
              progress: bool) -> dict | None:
    """A baseline's results (None while another process computes it)."""
    folder = (root / "runs" / model_label(model) / task_label(task) / kind
              / ("all" if kind == "zero-shot" else f"seed{seed}"))
    path = folder / "results.json"
    if path.exists():
        return read_json(path)
    with claimed(folder) as mine:
        if not mine:
            return None
        result = run_eval(fixtures.resolve(model["model"], root), fixtures.resolve(task, root),
                          template=template_for(model, task), mode=model.get("mode", "prompt"),
                          linear_probe=kind == "linear-probe", k=suite.k, seed=seed, limit=suite.test_limit,
                          progress=progress, dtype=model.get("dtype", "float32"), device=model.get("device", "cpu"))
        write_json(path, result, indent=1)
    return result


def _one_batch_target(suite: Suite, section: dict, root: Path) -> tuple[dict, dict]:
    """(the suite's model entry, the spec of its one-batch measurement) for `gradient` or `memory`."""
    model = suite.models[section.get("model", 0)]
    task = section.get("task", suite.tasks[0])
    spec = {"model": fixtures.resolve(model["model"], root), "task": fixtures.resolve(task, root),
            "mode": model.get("mode", "prompt"), "tuning": model.get("tuning", "full"),
            "template": template_for(model, task), "batch": section.get("batch", suite.batch_size), "k": suite.k,
            "seed": suite.seeds[0], "dtype": model.get("dtype", "float32")}
    if model.get("blocks") is not None:  # absent otherwise, so that the sections measured before still match
        spec["blocks"] = model["blocks"]
    if model.get("tuning_options"):
        spec["tuning_options"] = model["tuning_options"]
    return model, spec


def _gradient_quality(suite: Suite, root: Path, progress: bool) -> None:
    path = root / "gradient_quality.json"
    g = suite.gradient
    if not g or path.exists():
        return
    from ..finetune.build import load
    from ..finetune.commands import load_task, sample
    from .gradient import gradient_quality

    model, spec = _one_batch_target(suite, g, root)
    task = load_task(spec["task"])
    splits = sample(task, "kshot", suite.k, spec["seed"], suite.test_limit)
    built = load(spec["model"], task, spec["mode"], spec["tuning"], template=spec["template"], seed=spec["seed"],
                 dtype=dtype_of(spec["dtype"]), blocks=spec.get("blocks"), tuning_options=spec.get("tuning_options"))
    meta = {"model": model, "task": g.get("task", suite.tasks[0]), "batch": spec["batch"], "eps": g.get("eps", 1e-3),
            "samples": g.get("samples", 8)}
    partial = root / "gradient_quality.partial.json"  # rows finished before an interruption
    done = []
    if partial.exists():
        saved = read_json(partial)
        done = saved["rows"] if saved["meta"] == meta else []

    def save(rows):
        write_json(partial, {"meta": meta, "rows": rows}, indent=1)

    rows = gradient_quality(built, splits.train[: spec["batch"]], eps=g.get("eps", 1e-3),
                            samples=g.get("samples", 8), sweeps=g, seed=spec["seed"], progress=progress,
                            done=done, on_row=save)
    write_json(path, {"meta": meta, "rows": rows}, indent=1)
    partial.unlink(missing_ok=True)


def _memory(suite: Suite, root: Path, progress: bool) -> None:
    path = root / "memory.json"
    m = suite.memory
    if not m or path.exists():
        return
    from .memory import measure, median_of_runs

    model, spec = _one_batch_target(suite, m, root)
    spec["device"] = m.get("device", "cpu")
    methods = ["inference", *suite.estimator_names(), *model.get("first_order", suite.first_order)]
    repeats = m.get("repeats", 1)
    rows = [median_of_runs(measure, spec, method, repeats)
            for method in tqdm_bar(methods, desc="memory", unit="method", enabled=progress)]
    meta = {"model": model, "task": m.get("task", suite.tasks[0]), "batch": spec["batch"], "device": spec["device"],
            "repeats": repeats}
    write_json(path, {"meta": meta, "rows": rows}, indent=1)


def _step_cost(suite: Suite, root: Path, progress: bool) -> None:
    """DIR/step_cost.json, one entry per config of the `cost` section; a config already there is skipped,
    except that one measured before side-by-side timing existed gets it added."""
    c = suite.cost
    if not c:
        return
    from .cost import measure, measure_side_by_side

    path = root / "step_cost.json"
    done = read_json(path) if path.exists() else {"configs": []}
    have = {d["name"]: d for d in done["configs"]}
    methods = ["inference", *suite.estimator_names(), *c.get("first_order", ["sgd", "adam"])]
    rounds = c.get("side_by_side_rounds", 0)
    todo = [cfg for cfg in c["configs"]
            if cfg["name"] not in have or (rounds and "side_by_side" not in have[cfg["name"]])]
    bar = tqdm_bar(total=len(todo) * (len(methods) + bool(rounds)), desc="step cost",
                   enabled=progress and bool(todo), unit="probe")
    for cfg in todo:
        spec = {"config": cfg["config"], "dtype": cfg.get("dtype", "float32"), "batch": c.get("batch", 16),
                "seq": c.get("seq", 64), "device": c.get("device", "cpu"), "rounds": c.get("rounds", 3),
                "seed": suite.seeds[0], "perturbation": cfg.get("perturbation")}  # None: the estimator's default
        entry = have.get(cfg["name"])
        if entry is None:
            rows = []
            for method in methods:
                rows += measure(spec, [method])
                bar.update()
            entry = {"name": cfg["name"], **{k: v for k, v in spec.items() if k != "config"},
                     "config": cfg["config"], "measured": machine(), "rows": rows}
            done["configs"].append(entry)
            write_json(path, done, indent=1)  # kept if the side-by-side part fails
        else:
            bar.update(len(methods))
        if rounds:
            entry["side_by_side"] = {**measure_side_by_side(spec, methods, rounds), "measured": machine()}
            bar.update()
            write_json(path, done, indent=1)
    bar.close()


def _check_device(suite: Suite) -> None:
    from ..placement import checked_device

    devices = [suite.cost.get("device", "cpu")] if suite.cost else []
    devices += [m.get("device", "cpu") for m in suite.models]
    for device in dict.fromkeys(devices):
        try:
            checked_device(device)
        except ValueError as e:
            raise ValueError(f"suite {suite.name!r} runs on {device}: {e}") from None


def run_suite(suite: Suite, out: str | Path, progress: bool = True, only: Selection | None = None,
              shared: bool = True, runs: bool = True) -> list[str]:
    """Runs what is not finished yet; returns the forward-count mismatches (empty when all agree).

    Args:
        suite: the suite.
        out: its folder; finished runs there are skipped, interrupted ones resume.
        progress: progress bars.
        only: run just these runs and baselines (`zoo bench --only`); the one-batch sections
            (gradient quality, memory, step cost) belong to the whole suite and run without it.
        shared: the one-batch sections and the baselines; `zoo bench --jobs` runs them before its
            workers start, so that timings and memory peaks are taken on a machine to themselves.
        runs: the training runs.
    """
    only = only or Selection()
    _check_device(suite)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if shared:  # a --jobs worker leaves suite.json to the process that started it
        write_json(root / "suite.json", {k: v for k, v in vars(suite).items() if k != "path"}, indent=1)
        _shared_parts(suite, root, progress, only)
    return _runs(suite, root, progress, only) if runs else []


def _shared_parts(suite: Suite, root: Path, progress: bool, only: Selection) -> None:
    if not only.allowed:
        # the one-batch sections take minutes, the runs hours: a partial report already has them
        _gradient_quality(suite, root, progress)
        _memory(suite, root, progress)
        _step_cost(suite, root, progress)
        if suite.synthetic:
            from . import synthetic

            synthetic.run(root / "synthetic", progress=progress)
    # baselines take minutes and are every row's reference, so a partial table has them from the start
    for model in suite.models:
        for task in suite.tasks:
            for kind in suite.baselines:
                for seed in ([suite.seeds[0]] if kind == "zero-shot" else suite.seeds):
                    if only.admits(model, task, kind, seed):
                        _baseline(suite, model, task, seed, kind, root, progress=False)


def _runs(suite: Suite, root: Path, progress: bool, only: Selection) -> list[str]:
    mismatches = []
    at_start = {}  # step-0 test accuracies, shared by the runs that start from the same weights
    specs = [s for s in suite.runs() if only.admits(s.model, s.task, s.estimator, s.seed)]
    for spec in tqdm_bar(specs, desc=f"suite {suite.name}", enabled=progress, unit="run"):
        with claimed(spec.folder(root)) as mine:  # a second `zoo bench` beside this one takes other runs
            if not mine:
                continue
            cfg = _config(suite, spec, root)
            result = run_finetune(cfg, str(spec.folder(root)), {}, progress=False, test_curve=suite.test_curves)
            # The suite needs a finished run's metrics, not its weights: 168 SmolLM2 checkpoints would
            # take ~100 GB. A ZO run's weights can still be rebuilt from its results.json (`zoo eval --run`).
            (spec.folder(root) / "checkpoint.pt").unlink(missing_ok=True)
            if suite.test_curves and not has_test_curve(result) and can_replay(result):
                # finished before the suite scored test curves: rebuilt from its logged losses
                result = add_test_curve(spec.folder(root), *prepare_run(cfg, {}), at_start=at_start)
        problem = check_forward_count(spec, result)
        if problem:
            mismatches.append(problem)
    return mismatches

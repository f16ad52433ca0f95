"""Suites: estimators x models x tasks x seeds under one forward-pass budget.

A suite is a JSON file (presets live in benchmarks/suites/). Its keys:

    name            the suite's name
    models          [{"model": ..., "mode": "prompt"|"head", "tuning": "full"|"lora"|"blocks"|...,
                      "blocks": K (tuning "blocks"), "tuning_options": {"density": D, "regrowth": ...}
                      (tuning "sparse-delta"),
                      "template", "grid", "first_order", "forward_budget": optional per-model overrides,
                      "dtype": "float32"|"bfloat16"|"float16", "device": "cpu"|"cuda"|"cuda:N"}];
                    "template" is one template name for every task or a {task: name} map
                    (a task missing from the map gets its default template); dtype and device
                    (default float32, cpu) are those of `zoo finetune`, for the runs and baselines
                    and, in dtype, the gradient and memory sections
    tasks           task names or paths
    estimators      "all" (every registered estimator) or a list of names
    exclude         estimator names to leave out
    seeds           e.g. [0, 1, 2]
    forward_budget  forward passes per run; steps = budget // the estimator's forwards per step. A model
                    entry's own forward_budget replaces it for that model's runs: every method on a model
                    still gets the same budget, and a cheap model can get a budget at which it trains
    grid            {"lr": [...], "eps": [...]}: every estimator gets this grid, the best dev
                    accuracy picks the configuration whose test accuracy is reported (MeZO's protocol)
    estimator_grid  optional {name: {"lr": [...]}}: overrides per estimator
    first_order     {"sgd": {"lr": [...]}, "adam": {"lr": [...]}}: backprop baselines, same budget in steps
                    as MeZO-SGD (one forward and one backward per step)
    baselines       subset of ["zero-shot", "linear-probe"]
    k, batch_size, test_limit, evals   sampling and evaluation (evals: dev evaluations per run)
    test_curves     true (default): every dev evaluation also scores the test split, for test accuracy
                    against forward passes; a ZO run finished without it gets it by replaying its logged
                    losses (zoo/finetune/test_curve.py), a first-order one keeps its final point only
    gradient        optional {"model": index into models, "task": ..., "batch": 16, "eps": 1e-3,
                    "samples": 8, "n": [...], "sparsity": [...], "rank": [...]}: gradient quality
                    of every estimator against the true gradient on one batch (zoo/bench/gradient.py)
    memory          optional {"model": index into models, "task": ..., "batch": 16, "repeats": 1}: peak
                    memory of two steps of every method against two inference forwards on one batch, each
                    in a fresh process, the median of `repeats` processes (zoo/bench/memory.py)
    cost            optional {"configs": [{"name": ..., "config": {"model_type": "llama", ...HF config fields},
                    "dtype": "float32"|"bfloat16"|"float16", "perturbation": "inplace"|"exact" (default:
                    the estimators' own, exact for half precision)}], "batch": 16, "seq": 64, "device": "cpu"|"cuda",
                    "rounds": 5, "first_order": ["sgd", "adam"], "side_by_side_rounds": 0}: median step time
                    and peak memory of every method on random-init models built from these configs, each in a
                    fresh process, and with side_by_side_rounds > 0 the step times of all methods stepped in
                    turn in one process, for ratios free of the machine's drift between processes
                    (zoo/bench/cost.py); what the `gpu` preset measures, since weights do not travel
    synthetic       true: the synthetic suite (zoo/bench/synthetic.py: estimators on quadratics of set Hessian
                    spectra, and the measured slowdown against the theory's gamma) runs into DIR/synthetic with
                    the one-batch sections, and the report carries its tables

Every name in `zoo.estimators.available()` is in the suite unless excluded, so a
newly registered estimator joins it with no code change.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import estimators
from ..tasks import TEMPLATES
from .memory import check_repeats

PRESETS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
PRESETS = ("smoke", "cpu", "cpu-short", "cpu-long", "gpu")


@dataclass
class Suite:
    name: str
    models: list[dict]
    tasks: list[str]
    estimators: "str | list[str]" = "all"
    exclude: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    forward_budget: int = 100
    grid: dict = field(default_factory=lambda: {"lr": [1e-6], "eps": [1e-3]})
    estimator_grid: dict = field(default_factory=dict)
    first_order: dict = field(default_factory=dict)
    baselines: list[str] = field(default_factory=list)
    k: int = 16
    batch_size: int = 16
    test_limit: int | None = None
    evals: int = 5
    test_curves: bool = True
    gradient: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    synthetic: bool = False
    path: str = ""

    def estimator_names(self) -> list[str]:
        names = estimators.available() if self.estimators == "all" else list(self.estimators)
        for n in [*names, *self.exclude]:
            estimators.spec(n)  # an unknown name fails here, with the closest match
        return [n for n in names if n not in set(self.exclude)]

    def budget_for(self, model: dict) -> int:
        """Forward passes per run on `model`: its entry's own forward_budget, else the suite's."""
        return model.get("forward_budget", self.forward_budget)

    def grid_for(self, model: dict, name: str | None = None) -> dict:
        """The (lr, eps) grid of ZO estimator `name` on `model`: the suite's, overridden by the model
        entry's, overridden by the estimator's own (`estimator_grid`); without `name`, the model's."""
        return {**self.grid, **model.get("grid", {}), **(self.estimator_grid.get(name, {}) if name else {})}

    def runs(self) -> list["RunSpec"]:
        """Every training run of the suite, in a fixed order: seed by seed, so that an interrupted
        suite has every (model, task, method) at its first seed before any at its second."""
        out = []
        for seed, model, task in itertools.product(self.seeds, self.models, self.tasks):
            for name in self.estimator_names():
                grid = self.grid_for(model, name)
                spec = estimators.spec(name)
                steps = spec.steps_within(self.budget_for(model), **spec.defaults)
                per_step = spec.forwards_for(steps, **spec.defaults) / steps
                per_step = int(per_step) if per_step == int(per_step) else per_step
                for lr, eps in itertools.product(grid["lr"], grid["eps"]):
                    out.append(RunSpec(model, task, seed, name, lr, eps, steps, per_step))
            steps = max(self.budget_for(model) // 2, 1)  # MeZO-SGD's steps: one backward per MeZO step
            for name, g in model.get("first_order", self.first_order).items():
                for lr in g["lr"]:
                    out.append(RunSpec(model, task, seed, name, lr, 0.0, steps, 1))
        return out


@dataclass(frozen=True)
class RunSpec:
    model: dict
    task: str
    seed: int
    estimator: str
    lr: float
    eps: float
    steps: int
    #: the estimator's declared forwards per step, averaged over the run's steps (MeZO-SVRG alternates)
    forwards_per_step: float

    @property
    def declared_forwards(self) -> int:
        """The forward passes the run's estimator declares for its steps."""
        return round(self.forwards_per_step * self.steps)

    def folder(self, root: Path) -> Path:
        return (root / "runs" / model_label(self.model) / task_label(self.task) / self.estimator
                / f"lr{self.lr:g}-eps{self.eps:g}" / f"seed{self.seed}")


_KEYS = set(Suite.__dataclass_fields__) - {"path"}


def model_label(model: dict) -> str:
    """A model entry's folder name: the model with '/' made safe, its tuning, and its dtype and
    device where they are not the defaults (so float32 CPU runs keep their folders)."""
    label = model["model"].replace("/", "_") + f"-{model.get('tuning', 'full')}"
    if model.get("blocks") is not None:
        label += str(model["blocks"])  # tuning "blocks" with K=2: smollm2-135m-blocks2
    for key, value in sorted(model.get("tuning_options", {}).items()):  # smollm2-135m-sparse-delta-density0.01
        label += f"-{key}{value:g}" if isinstance(value, float) else f"-{key}{value}"
    for key, default in (("dtype", "float32"), ("device", "cpu")):
        if model.get(key, default) != default:
            label += "-" + model[key].replace(":", "")
    return label


def model_title(model: dict) -> str:
    """A model entry as the report names it: "smollm2-135m (full)", "minilm-l6 (head, bfloat16, cuda)"."""
    extra = [model[k] for k, default in (("dtype", "float32"), ("device", "cpu")) if model.get(k, default) != default]
    tuning = model.get("tuning", "full") + (f" {model['blocks']}" if model.get("blocks") is not None else "")
    tuning += "".join(f" {k}={v}" for k, v in sorted(model.get("tuning_options", {}).items()))
    return f"{model['model']} ({', '.join([tuning, *extra])})"


def task_label(task: str) -> str:
    """A task's short name: itself for a built-in task, the file's stem for a user's file."""
    return Path(task).stem if "/" in task or "." in task else task


def template_for(model: dict, task: str) -> str | None:
    """The template a model entry asks for on `task` (None: the task's default)."""
    template = model.get("template")
    if isinstance(template, dict):
        return template.get(task_label(task))
    return template


def load_suite(spec: str) -> Suite:
    """A suite from a preset name (`smoke`, `cpu`, `gpu`) or a JSON file path."""
    path = PRESETS_DIR / f"{spec}.json" if spec in PRESETS else Path(spec)
    if not path.is_file():
        raise ValueError(f"suite {spec!r}: not a preset ({', '.join(PRESETS)}) and no such file")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
    for key in ("name", "models", "tasks"):
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r}")
    suite = Suite(**raw, path=str(path))
    for where, budget in [("forward_budget", suite.forward_budget),
                          *((f"models[{i}].forward_budget", m["forward_budget"])
                            for i, m in enumerate(suite.models) if "forward_budget" in m)]:
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 2:
            raise ValueError(f"{path}: {where} must be an integer of at least 2, got {budget!r}")
    for key in ("test_curves", "synthetic"):
        if not isinstance(getattr(suite, key), bool):
            raise ValueError(f"{path}: {key} must be true or false, got {getattr(suite, key)!r}")
    for fo in suite.first_order:
        if fo not in ("sgd", "adam"):
            raise ValueError(f"{path}: first_order has {fo!r}; use sgd and/or adam")
    bad = set(suite.baselines) - {"zero-shot", "linear-probe"}
    if bad:
        raise ValueError(f"{path}: unknown baselines {sorted(bad)}; use zero-shot and/or linear-probe")
    for i, m in enumerate(suite.models):
        _check_placement(m, f"{path}: models[{i}]")
        t = m.get("template")
        if t is not None and not isinstance(t, str) and not (
                isinstance(t, dict) and all(isinstance(v, str) for v in t.values())):
            raise ValueError(f"{path}: models[{i}].template must be a template name or a {{task: name}} map")
        for task in suite.tasks:
            name, known = template_for(m, task), TEMPLATES.get(task)
            if name is not None and known is not None and name not in known:
                raise ValueError(f"{path}: models[{i}] asks for template {name!r} on {task}, which has "
                                 f"{', '.join(known)}; give a {{task: name}} map")
    suite.estimator_names()
    try:
        check_repeats(suite.memory.get("repeats", 1))
    except ValueError as e:
        raise ValueError(f"{path}: memory.{e}") from None
    _check_cost(suite.cost, path)
    return suite


def _check_placement(model: dict, where: str) -> None:
    from ..placement import dtype_of, parse_device

    for key, check in (("dtype", dtype_of), ("device", parse_device)):
        if key in model:
            try:
                check(model[key])
            except ValueError as e:
                raise ValueError(f"{where} has {key} {model[key]!r}: {e}") from None


def _check_cost(cost: dict, path: Path) -> None:
    from ..estimators.base import PERTURBATIONS
    from ..placement import DTYPES

    if not cost:
        return
    configs = cost.get("configs")
    if not configs:
        raise ValueError(f"{path}: cost needs a non-empty list \"configs\"")
    for i, c in enumerate(configs):
        if "name" not in c or "model_type" not in c.get("config", {}):
            raise ValueError(f"{path}: cost.configs[{i}] needs \"name\" and a \"config\" with \"model_type\"")
        if c.get("dtype", "float32") not in DTYPES:
            raise ValueError(f"{path}: cost.configs[{i}] has dtype {c['dtype']!r}; use one of {sorted(DTYPES)}")
        if c.get("perturbation") not in (None, *PERTURBATIONS):
            raise ValueError(f"{path}: cost.configs[{i}] has perturbation {c['perturbation']!r}; "
                             f"use one of {list(PERTURBATIONS)}")
    bad = set(cost.get("first_order", [])) - {"sgd", "adam"}
    if bad:
        raise ValueError(f"{path}: cost.first_order has {sorted(bad)}; use sgd and/or adam")
    if cost.get("rounds", 3) < 1:
        raise ValueError(f"{path}: cost.rounds must be at least 1, got {cost['rounds']}")
    sbs = cost.get("side_by_side_rounds", 0)
    if not isinstance(sbs, int) or isinstance(sbs, bool) or sbs < 0:
        raise ValueError(f"{path}: cost.side_by_side_rounds must be a whole number, 0 or more, got {sbs!r}")

"""What `zoo finetune` and `zoo eval` do, separate from argument parsing."""

from __future__ import annotations

import random
import time
from pathlib import Path

from .. import tasks
from ..placement import checked_device, dtype_of
from ..provenance import machine
from ..validation import integer
from .build import load
from .evaluate import evaluate
from .loop import FIRST_ORDER, FinetuneConfig, completed_config, finetune, peak_memory_bytes, reset_peak_memory
from .runs import load_run_weights, run_config

# MeZO's grids (appendix E): the middle of each, per tuning; first-order Adam uses its own scale
# AdaZeta's TT adapters: its scripts' lr 1e-4 and eps 1e-3 (first-order: LoRA's)
# sparse deltas (about as many trained entries as LoRA at density 1%): LoRA's ZO lr, full tuning's eps; untuned
DEFAULT_LR = {"full": 1e-6, "lora": 5e-5, "prefix": 1e-3, "head": 1e-2, "blocks": 1e-6, "tt-adapter": 1e-4,
              "prompt": 1e-3, "sparse-delta": 5e-5}
DEFAULT_EPS = {"full": 1e-3, "lora": 1e-2, "prefix": 1e-1, "head": 1e-3, "blocks": 1e-3, "tt-adapter": 1e-3,
               "prompt": 1e-2, "sparse-delta": 1e-3}  # SmolLM2's embeddings have std 0.136: 1e-2 moves a 576-wide row by ~7%
DEFAULT_LR_FIRST_ORDER = {"full": 1e-5, "lora": 1e-4, "prefix": 1e-3, "head": 1e-3, "blocks": 1e-5,
                          "tt-adapter": 1e-4, "prompt": 1e-3, "sparse-delta": 1e-4}


def default_lr(estimator: str, tuning: str) -> float:
    return (DEFAULT_LR_FIRST_ORDER if estimator in FIRST_ORDER else DEFAULT_LR)[tuning]


def load_task(name, data_dir=None, text_column=None, text_b_column=None, label_column="label", labels=None,
              encoding="utf-8"):
    if Path(name).suffix.lower() in (".tsv", ".csv", ".jsonl", ".json"):
        return tasks.user_task(name, text_column, text_b_column, label_column, labels, encoding)
    given = [flag for flag, value in (("--text-column", text_column), ("--text-b-column", text_b_column),
                                      ("--labels", labels), ("--encoding", encoding if encoding != "utf-8" else None))
             if value is not None]
    if label_column != "label":
        given.append("--label-column")
    if given:
        raise ValueError(f"{', '.join(given)}: for your own .tsv/.csv/.jsonl file; the built-in task {name!r} "
                         "defines its own columns, labels and encoding")
    return tasks.get_task(name, data_dir)


def sample(task, protocol: str, k: int, seed: int, test_limit: int | None):
    if protocol == "mezo":
        s = tasks.mezo_split(task, seed)
        return tasks.Splits(s.train, s.dev, s.test[:test_limit] if test_limit else s.test, s.test_source)
    return tasks.few_shot(task, k, seed, test_limit)


def prepare_run(cfg: FinetuneConfig, task_args: dict):
    """(the model and scorer at their initial weights, the splits) of the run `cfg` describes."""
    cfg.validate()  # a bad estimator or objective fails before any model is loaded
    from .build import model_kind

    model_kind(cfg.model)  # an unknown model fails before the data is read
    if cfg.task == "squad":  # a generation task: its own splits, scorer and metrics
        from ..generation.training import load_squad_model, squad_run_splits

        splits = squad_run_splits(cfg, task_args.get("data_dir"))
        return load_squad_model(cfg).to(cfg.device), splits
    task = load_task(cfg.task, **task_args)
    splits = sample(task, cfg.protocol, cfg.k, cfg.seed, cfg.test_limit)
    built = load(cfg.model, task, cfg.mode, cfg.tuning, template=cfg.template, max_length=cfg.max_length,
                 seed=cfg.seed, dtype=dtype_of(cfg.dtype), blocks=cfg.blocks, activation_cache=cfg.activation_cache,
                 tuning_options=cfg.tuning_options)
    built.to(cfg.device)
    return built, splits


def run_finetune(cfg: FinetuneConfig, out: str, task_args: dict, progress: bool = True,
                 snapshot_every: int | None = None, test_curve: bool = False, tensorboard: bool = False) -> dict:
    from .lock import refuse_if_held
    from .ranks import close_group, init_from_env, rank_and_world

    owned = init_from_env(cfg.device)  # under torchrun: join the ranks' process group
    if rank_and_world()[0] == 0:  # rank 0 holds the folder; the others train beside it
        refuse_if_held(out)  # before loading the model: a second process on the folder stops at once
    built, splits = prepare_run(cfg, task_args)
    result = finetune(cfg, built, splits, out, progress=progress, snapshot_every=snapshot_every,
                      test_curve=test_curve, tensorboard=tensorboard)
    if owned:  # not on an error: a barrier would wait for the rank that failed
        close_group()
    return result


def run_eval(model: str, task_name: str, *, split: str | None = None, limit: int | None = None,
             template: str | None = None, mode: str = "prompt", icl: int = 0, linear_probe: bool = False,
             k: int = 16, seed: int = 0, from_run: str | None = None, max_length: int = 256,
             task_args: dict | None = None, progress: bool = True, dtype: str = "float32",
             device: str | None = None) -> dict:
    """Zero-shot, in-context or linear-probe accuracy; or the accuracy of a finished `zoo finetune` run.

    A run is evaluated in its own dtype, and on its own device unless `device` says otherwise
    (rebuilding a run from its logged losses on another device is not bit-exact).
    """
    task_args = task_args or {}
    if limit is not None:
        integer("limit", limit, minimum=1, note="or None: the whole split")
    integer("icl", icl, minimum=0, what="demonstrations per class")
    integer("k", k, minimum=1)
    integer("max_length", max_length, minimum=1)
    run_cfg = None
    if from_run:
        run_cfg = completed_config(run_config(from_run))
        model, task_name, mode, template = run_cfg["model"], run_cfg["task"], run_cfg["mode"], run_cfg["template"]
        max_length, dtype, device = run_cfg["max_length"], run_cfg["dtype"], device or run_cfg["device"]
    torch_dtype, device = dtype_of(dtype), checked_device(device or "cpu")
    task = load_task(task_name, **task_args)
    peak_scope = reset_peak_memory()
    t0 = time.time()
    if linear_probe:
        from .probe import linear_probe as probe

        splits = tasks.few_shot(task, k, seed, limit)
        built = load(model, task, mode, "full", template=template, max_length=max_length, dtype=torch_dtype)
        built.to(device)
        metrics = probe(built.model, built.scorer, splits, task.num_classes)
        how = f"linear probe on k={k} (seed {seed})"
    else:
        split = split or task.eval_split
        # a user's single file is evaluated on its held-out fifth, the test set of `zoo finetune`
        if split != "all" and split not in task.splits:
            raise ValueError(f"split: {task.name} has no split {split!r}; it has {', '.join(task.splits)}")
        examples = tasks.held_out(task)[1] if split == "all" else task.examples(split)
        examples = examples[:limit] if limit else examples
        demos = []
        if icl:
            rng = random.Random(f"{task.name}/icl{icl}/seed{seed}")
            demos = tasks.few_shot(task, icl, seed).train
            rng.shuffle(demos)
        tuning = run_cfg["tuning"] if run_cfg else "full"
        built = load(model, task, mode, tuning, template=template, max_length=max_length, demonstrations=demos,
                     seed=run_cfg["seed"] if run_cfg else seed, dtype=torch_dtype,
                     blocks=run_cfg["blocks"] if run_cfg else None,
                     activation_cache=run_cfg["activation_cache"] if run_cfg else True,
                     tuning_options=run_cfg.get("tuning_options") if run_cfg else None)
        built.to(device)
        if run_cfg:
            load_run_weights(from_run, built.model, progress=progress)
        metrics = evaluate(built.model, built.scorer, examples, progress=split if progress else None)
        how = (f"fine-tuned run {from_run}" if run_cfg else
               f"{icl}-shot in-context per class" if icl else "zero-shot")
    split = split if not linear_probe else task.eval_split
    # the set `zoo finetune` tests on is called the test set in every command, whatever the file calls it
    role = "test" if split in (task.eval_split, "all") else "train" if split == "train" else None
    return {"config": {"model": model, "task": task.name, "split": split, "role": role,
                       "source": tasks.test_source(task) if role == "test" else f"the task's {split!r} split",
                       "template": None if mode == "head" else task.template(template).name,
                       "mode": mode, "method": how, "limit": limit, "seed": seed, "dtype": dtype,
                       "device": str(device)},
            "metrics": metrics, "wall_time_s": time.time() - t0, "peak_memory_bytes": peak_memory_bytes(),
            "peak_memory_scope": peak_scope, "measured": machine()}

"""The `zoo` command line."""

from __future__ import annotations

import argparse
import os
import sys

import zoo
from zoo.perturb.backend import BACKENDS
from zoo.placement import DTYPES
from .files import write_json


def _demo(args):
    from .demo import run

    r = run(args.out, steps=args.steps, k=args.k, seed=args.seed, lr=args.lr, eps=args.eps,
            estimator=args.estimator, train=args.train, data_dir=args.data_dir, progress=not args.quiet)
    m = r["metrics"]
    print(f"SST-2 test accuracy {m['accuracy']:.3f} on {m['test_examples']} sentences (GLUE's dev.tsv; a zero head "
          "scores 0.491) "
          f"after {r['config']['steps']} steps = {r['forward_passes']} forward passes in {r['wall_time_s']:.0f} s; "
          f"wrote {args.out}/results.json and {args.out}/curve.png")


def _estimators(args):
    for name in zoo.available():
        s = zoo.estimators.spec(name)
        print(f"{name:12s} {s.description}  [forwards/step: {s.cost}; extra state: {s.extra_state}; {s.paper}]")


def _prune(args):
    from .pruning.experiment import PruneConfig, run_prune, summary

    cfg = PruneConfig(model=args.model, units=args.units, keep=args.keep, steps=args.steps, samples=args.samples,
                      lr=args.lr, batch_size=args.batch_size, seq_len=args.seq_len, held_out=args.held_out,
                      sst2_limit=args.sst2_limit, seed=args.seed)
    result = run_prune(cfg, args.out, data_dir=args.data_dir, progress=not args.quiet)
    print(summary(result))
    print(f"wrote {args.out}/results.json")


def _task_args(args) -> dict:
    labels = args.labels.split(",") if args.labels else None
    return {"data_dir": args.data_dir, "text_column": args.text_column, "text_b_column": args.text_b_column,
            "label_column": args.label_column, "labels": labels, "encoding": args.encoding}


def finetune_config(args):
    """The FinetuneConfig that `zoo finetune` with these parsed arguments runs."""
    from .finetune.commands import DEFAULT_EPS, default_lr
    from .finetune.loop import FinetuneConfig

    options = {}
    if args.n is not None:
        options["n"] = args.n
    if args.perturbation:  # else the estimator's default: exact for half-precision weights
        options["perturbation"] = args.perturbation
    if args.backend != "auto":  # left out otherwise, so that a run started without --backend still resumes
        options["backend"] = args.backend
    return FinetuneConfig(
        model=args.model, task=args.task, estimator=args.estimator, steps=args.steps, k=args.k,
        protocol=args.protocol, seed=args.seed, lr=args.lr if args.lr is not None else default_lr(args.estimator, args.tuning),
        eps=args.eps if args.eps is not None else DEFAULT_EPS[args.tuning], batch_size=args.batch_size,
        mode=args.mode, tuning=args.tuning, template=args.template, objective=args.objective,
        eval_every=args.eval_every, test_limit=args.test_limit, max_length=args.max_length,
        checkpoint_every=args.checkpoint_every, estimator_options=options, dtype=args.dtype, device=args.device,
        blocks=args.blocks, activation_cache=not args.no_activation_cache, max_new_tokens=args.max_new_tokens,
        tuning_options={k: v for k, v in (("density", args.density), ("regrowth", args.regrowth),
                                          ("every", args.regrow_every)) if v is not None})


def _finetune(args):
    from .finetune.commands import run_finetune

    cfg = finetune_config(args)
    r = run_finetune(cfg, args.out, _task_args(args), progress=not args.quiet, snapshot_every=args.snapshot_every,
                     test_curve=args.test_curve, tensorboard=args.tensorboard)
    # under torchrun one line for the run, from the rank that wrote it (torchrun's RANK: the group is gone by now)
    if r.get("world_size", 1) > 1 and int(os.environ.get("RANK", "0")) != 0:
        return
    m = r["metrics"]
    source = f": {m['test_source']}" if "test_source" in m else ""
    ranks = f" on {r['world_size']} ranks" if r.get("world_size", 1) > 1 else ""
    metric = r.get("metric", "accuracy")
    scores = (f"F1 {100 * m['f1']:.1f}, exact match {100 * m['exact_match']:.1f}" if metric == "f1" else
              f"accuracy {m['accuracy']:.4f}")
    print(f"{cfg.task} test {scores} ({m['test_examples']} examples{source}), dev "
          f"{m[f'dev_{metric}']:.4f} ({m['dev_examples']} examples from train), "
          f"after {cfg.steps} steps = {r['forward_passes']} forward passes in {r['wall_time_s']:.0f} s{ranks}; "
          f"wrote {args.out}/results.json and {args.out}/curve.png")


def eval_options(args) -> dict:
    """The keyword arguments of run_eval, after model and task, that `zoo eval` passes for these arguments."""
    return {"split": args.split, "limit": args.limit, "template": args.template, "mode": args.mode, "icl": args.icl,
            "linear_probe": args.linear_probe, "k": args.k, "seed": args.seed, "from_run": args.run,
            "max_length": args.max_length, "dtype": args.dtype, "device": args.device}


def _eval_squad(args):
    """`zoo eval --task squad`: F1 and exact match of greedy answers on the test pool's questions."""
    import time

    from .generation import load_squad, squad_splits
    from .generation.evaluate import evaluate_squad
    from .models import load_causal_lm
    from .placement import checked_device, dtype_of
    from .provenance import machine
    from .tasks import data_dir
    from .validation import integer

    for flag, value in (("--linear-probe", args.linear_probe or None), ("--split", args.split),
                        ("--template", args.template)):
        if value is not None:
            raise ValueError(f"{flag}: not for squad (its test questions come from the test pool, its prompt is "
                             "MeZO's)")
    limit = 1000 if args.limit is None else integer("limit", args.limit, minimum=1)
    integer("icl", args.icl, minimum=0, what="demonstrations")
    integer("max_new_tokens", args.max_new_tokens, minimum=1)
    if args.run and args.icl:
        raise ValueError("--icl: not with --run (a fine-tuned run is evaluated on its own prompt)")
    articles = load_squad(data_dir(args.data_dir) / "squad" / "dev-v1.1.json")
    _, demos, test = squad_splits(articles, args.seed, train=1, dev=max(args.icl, 1), test=limit)
    t0 = time.time()
    if args.run:
        r = _eval_squad_run(args.run, test, args.device, progress=not args.quiet)
    else:
        model, tok = load_causal_lm(args.model, dtype_of(args.dtype))
        model.to(checked_device(args.device or "cpu"))
        r = evaluate_squad(model, tok, test, demos[:args.icl], args.max_new_tokens, progress=not args.quiet)
        r["config"] = {"model": args.model, "icl": args.icl, "max_new_tokens": args.max_new_tokens,
                       "dtype": args.dtype}
    r["config"].update(task="squad", seed=args.seed, limit=limit,
                       test_pool="every third article of dev-v1.1.json (zoo/generation/squad.py)")
    r["wall_time_s"], r["measured"] = time.time() - t0, machine()
    if args.json:
        write_json(args.json, r, indent=1)
    m = r["metrics"]
    how = f"fine-tuned run {args.run}" if args.run else f"{args.icl}-shot in context" if args.icl else "zero-shot"
    speed = f"{r['tokens_generated'] / r['seconds']:.0f} tokens/s, " if "tokens_generated" in r else ""
    print(f"squad test pool: F1 {100 * m['f1']:.1f}, exact match {100 * m['exact_match']:.1f} on {m['examples']} "
          f"questions ({how}, {speed}{r['wall_time_s']:.0f} s)")


def _eval_squad_run(run, test, device, progress: bool) -> dict:
    """A finished or interrupted `zoo finetune --task squad` run's weights on `test`: its checkpoint, else
    its logged losses replayed on the pretrained weights; decoded with the run's own settings."""
    from .finetune.loop import FinetuneConfig, completed_config
    from .finetune.runs import load_run_weights, run_config
    from .generation.training import load_squad_model

    cfg = FinetuneConfig(**completed_config(run_config(run)))
    if cfg.task != "squad":
        raise ValueError(f"--run {run}: a run on {cfg.task!r}, not squad; evaluate it with --task {cfg.task}")
    built = load_squad_model(cfg).to(device or cfg.device)
    step = load_run_weights(run, built.model, progress=progress)
    m = built.scorer.evaluate(built.model, test, progress="test" if progress else None)
    predictions = m.pop("predictions")
    return {"metrics": m, "predictions": predictions,
            "config": {"run": str(run), "step": step, "model": cfg.model, "dtype": cfg.dtype,
                       "max_new_tokens": cfg.max_new_tokens, "max_length": cfg.max_length}}


def _eval(args):
    from .finetune.commands import run_eval

    if args.task == "squad":
        return _eval_squad(args)

    r = run_eval(args.model, args.task, **eval_options(args), task_args=_task_args(args), progress=not args.quiet)
    if args.json:
        write_json(args.json, r, indent=1)
    c, m = r["config"], r["metrics"]
    which = f"test set ({c['source']})" if c.get("role") == "test" else f"split {c['split']!r}"
    print(f"{c['task']} {which}: accuracy {m['accuracy']:.4f} on {m['examples']} examples "
          f"({c['method']}, template {c['template']}, {r['wall_time_s']:.0f} s)")


def _theory_rank(args):
    from .finetune.build import load
    from .finetune.commands import load_task, sample
    from .theory.measure import measure

    if args.over_training and not args.run:
        raise ValueError("--over-training needs --run DIR (a zoo finetune run with --snapshot-every)")
    if args.run:
        from .finetune.runs import load_run_weights, run_config

        c = run_config(args.run)
        args.model, args.task, args.template, args.k, args.seed = c["model"], c["task"], c["template"], c["k"], c["seed"]
        args.no_prompt, tuning = c["mode"] == "head", c["tuning"]
    else:
        tuning = "full"
    task = load_task(args.task, **_task_args(args))
    mode = "head" if args.no_prompt else "prompt"
    splits = sample(task, "kshot", args.k, args.seed, None)
    built = load(args.model, task, mode, tuning, template=args.template, max_length=args.max_length,
                 attn_implementation="eager", seed=args.seed)
    if args.over_training:
        return _theory_rank_over_training(args, built, splits, task, mode)
    run_step = load_run_weights(args.run, built.model, progress=not args.quiet) if args.run else 0
    r = measure(built, splits.train, args.params, args.matvecs, args.lanczos, args.slq_steps, args.slq_probes,
                args.seed)
    r["config"] = {"model": args.model, "task": task.name, "k": args.k, "seed": args.seed, "mode": mode,
                   "template": None if args.no_prompt else task.template(args.template).name,
                   "run": args.run, "run_step": run_step}
    if args.json:
        write_json(args.json, r, indent=1)
    if args.plot:
        from .theory.plots import plot_density

        plot_density({mode: r}, args.plot, f"{args.model} ({r['params']}), {task.name} batch {r['batch']}")
    print(f"{task.name} {mode}: tr H = {r['trace']:.4g} ± {r['trace_stderr']:.2g}, lambda_max = {r['lambda_max']:.4g}, "
          f"r = {r['r']:.3g} ± {r['r_stderr']:.2g}, r+ = {r['slq']['r_plus']:.3g} (SLQ), over {r['dim']} parameters "
          f"({r['params']}), {r['total_matvecs']} HVPs in {r['hvp_seconds']:.0f} s")


def _theory_rank_over_training(args, built, splits, task, mode):
    from .files import load_torch
    from .finetune.loop import load_trainable_state, snapshots
    from .theory.measure import measure

    snaps = snapshots(args.run)
    if not snaps:
        raise ValueError(f"{args.run}: no snapshots/ (run zoo finetune with --snapshot-every N)")
    points = []
    # the same probes at every point (common random numbers), so changes along the run are not probe noise
    for step, path in [(0, None), *((int(p.stem[4:]), p) for p in snaps)]:
        if path is not None:
            load_trainable_state(built.model, load_torch(path)["params"])
        r = measure(built, splits.train, args.params, args.matvecs, args.lanczos, args.slq_steps, args.slq_probes,
                    args.seed)
        points.append({"step": step, **r})
        print(f"step {step}: loss {r['loss']:.4f}, tr H = {r['trace']:.4g} ± {r['trace_stderr']:.2g}, "
              f"lambda_max = {r['lambda_max']:.4g}, r = {r['r']:.3g}, r+ = {r['slq']['r_plus']:.3g}", flush=True)
        if args.json:  # kept as it grows: a long measurement can be read before it ends
            write_json(args.json, {"config": {"run": args.run, "model": args.model, "task": task.name, "k": args.k,
                                              "seed": args.seed, "mode": mode}, "points": points}, indent=1)
    if args.plot:
        from .theory.plots import plot_trajectory

        plot_trajectory(points, args.plot, f"{args.model} ({points[0]['params']}), {task.name} batch "
                                           f"{points[0]['batch']}, along {args.run}")


def _theory_slowdown(args):
    from .finetune.build import load
    from .finetune.commands import load_task, sample
    from .theory.experiment import measure_slowdown

    task = load_task(args.task, **_task_args(args))
    splits = sample(task, "kshot", args.k, args.seed, None)
    built = load(args.model, task, "prompt", "full", template=args.template, max_length=args.max_length,
                 attn_implementation="eager")
    r = measure_slowdown(built, splits.train, subset=args.params, ns=tuple(args.n), sgd_steps=args.sgd_steps,
                         seeds=tuple(args.seeds), eta_scale=args.eta_scale, eps=args.eps, matvecs=args.matvecs)
    r["config"] = {"model": args.model, "task": task.name, "k": args.k, "seed": args.seed,
                   "template": task.template(args.template).name}
    if args.json:
        write_json(args.json, r, indent=1)
    if args.plot:
        from .theory.plots import plot_slowdown

        plot_slowdown(r, args.plot, f"{args.model} ({r['params']}, {r['dim']} parameters), {task.name} "
                                    f"batch {len(splits.train)}: {r['r_source']} = {r['r_used']:.3g}")
    print(f"{task.name}: r = {r['r']:.3g} (gamma uses {r['r_source']} = {r['r_used']:.3g}), lambda_max = {r['lambda_max']:.4g}; SGD {args.sgd_steps} steps to loss "
          f"{r['target_loss']:.4f}; " + "; ".join(
              f"n={row['n']}: predicted {row['gamma']:.2f}, measured "
              + (f"{row['measured']:.2f}" if row["measured"] is not None else f"not reached in {row['cap']} steps "
                 f"({row['reached']} seeds)") for row in r["rows"]))


def _bench_runs(suite, args, only) -> list[str]:
    """Runs the suite here, or with --jobs N beside N-1 worker processes once the shared parts are done."""
    import torch

    from .bench import run_suite
    from .bench.workers import Workers, threads_per_job

    if args.jobs == 1:
        return run_suite(suite, args.out, progress=not args.quiet, only=only)
    run_suite(suite, args.out, progress=not args.quiet, only=only, runs=False)
    threads = threads_per_job(args.jobs)
    workers = Workers([args.suite, "--out", args.out, *(["--only", *args.only] if args.only else [])],
                      args.jobs - 1, threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        mismatches = run_suite(suite, args.out, progress=not args.quiet, only=only, shared=False)
    except BaseException:
        workers.stop()
        raise
    finally:
        torch.set_num_threads(before)
    failures = workers.wait()
    if failures:
        raise ValueError("; ".join(failures))
    return mismatches


def _bench_synthetic(args):
    import time

    from .bench import publish, synthetic
    from .provenance import machine

    if args.only or args.jobs != 1 or args.worker:
        raise ValueError("the synthetic suite takes neither --only nor --jobs (it runs in minutes in one process)")
    data = synthetic.run(args.out, progress=not args.quiet) if not args.report_only else None
    if data is None:
        from .files import read_json

        data = read_json(os.path.join(args.out, "synthetic.json"))
    command = f"zoo bench synthetic --out {args.out}" + (f" --docs {args.docs}" if args.docs else "")
    summary = synthetic.report(data, args.out, command, {**machine(), "date": time.strftime("%Y-%m-%d")})
    if args.docs:
        summary = publish(args.out, args.docs)
    print(f"synthetic suite: {len(data['equal_forwards'])} equal-forward rows, {len(data['slowdown'])} slowdown "
          f"points; table: {summary}")


def _bench(args):
    from .bench import load_suite, parse_selection, publish, run_suite, write_report

    if args.suite == "synthetic":
        return _bench_synthetic(args)
    suite = load_suite(args.suite)
    only = parse_selection(args.only, suite)
    if args.report_only and not os.path.isdir(args.out):
        raise ValueError(f"--report-only: {args.out} is not a folder of runs (run the suite into it first)")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.worker:  # started by a `zoo bench --jobs N` that writes the report itself
        mismatches = run_suite(suite, args.out, progress=False, only=only, shared=False)
    else:
        mismatches = [] if args.report_only else _bench_runs(suite, args, only)
        command = f"zoo bench {args.suite} --out {args.out}" + (f" --docs {args.docs}" if args.docs else "")
        summary = write_report(suite, args.out, command)
        if args.docs:
            summary = publish(args.out, args.docs)
        print(f"{len(suite.runs())} runs of suite {suite.name!r}; table: {summary}")
    if mismatches:
        raise ValueError("forward passes declared and run differ: " + "; ".join(mismatches))


def _add_task_options(p):
    p.add_argument("--task", default="sst2",
                   help="a built-in task (sst2, sst5, trec, rte, cb, boolq, copa, wic, wsc, multirc; squad, a "
                        "generation task) or a .tsv/.csv/.jsonl file")
    p.add_argument("--data-dir", default=None, help="task data folder (default: $ZOO_DATA_DIR or ../shared/data)")
    p.add_argument("--text-column", default=None, help="your file's text column (default: text, else sentence)")
    p.add_argument("--text-b-column", default=None, help="your file's second text column, for pair tasks")
    p.add_argument("--label-column", default="label")
    p.add_argument("--labels", default=None, help="comma-separated label values of your file (default: those seen)")
    p.add_argument("--encoding", default="utf-8",
                   help="of your file: utf-8 (default; utf-8-sig accepted), latin-1 (ISO-8859-1) or cp1252")
    p.add_argument("--template", default=None, help="template name (default: the task's first, 'mezo')")
    p.add_argument("--mode", choices=["prompt", "head"], default="prompt",
                   help="prompt: score candidate answers with the LM; head: a new classification head")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=16, help="examples per class (k-shot)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (transformers' loading bars included)")


def _add_dtype_option(p):
    p.add_argument("--dtype", choices=list(DTYPES), default="float32",
                   help="of the pretrained weights (an encoder's new head, LoRA factors and prefixes stay float32); "
                        "with `zoo eval --run`, the run's own")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zoo", description="Zeroth-order fine-tuning toolkit")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train an SST-2 head on all-MiniLM-L6-v2 with forward passes only")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--steps", type=int, default=1000)
    d.add_argument("--k", type=int, default=16, help="training examples per class")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--lr", type=float, default=0.1)
    d.add_argument("--eps", type=float, default=1e-3)
    d.add_argument("--estimator", default="mezo-sgd")
    d.add_argument("--train", choices=["head", "full"], default="head", help="train the head, or the whole encoder too")
    d.add_argument("--data-dir", default=None, help="folder holding glue-sst2/ (default: $ZOO_DATA_DIR or ../shared/data)")
    d.add_argument("--quiet", action="store_true", help="no progress bars (transformers' loading bars included)")
    d.set_defaults(fn=_demo)
    f = sub.add_parser("finetune", help="fine-tune a pretrained model on a task with a ZO (or first-order) estimator")
    f.add_argument("--model", default="smollm2-135m", help="smollm2-135m, minilm-l6, or a local HF model folder")
    _add_task_options(f)
    f.add_argument("--estimator", default="mezo-sgd", help="a registered ZO estimator (zoo estimators), or sgd/adam for backprop")
    f.add_argument("--steps", type=int, default=100)
    f.add_argument("--lr", type=float, default=None, help="default: by tuning (full 1e-6, lora 5e-5, prefix 1e-3, prompt 1e-3, "
                   "tt-adapter 1e-4, head 1e-2)")
    f.add_argument("--eps", type=float, default=None, help="default: by tuning (full 1e-3, lora 1e-2, prefix 1e-1, prompt 1e-2, "
                   "tt-adapter 1e-3)")
    f.add_argument("--n", type=int, default=None, help="directions per step, for n-spsa")
    f.add_argument("--perturbation", choices=["inplace", "exact", "batched"], default=None,
                   help="default: exact where the trained weights are bfloat16/float16 (docs/drift.md), "
                   "else inplace; LoRA factors and prefixes stay float32")
    f.add_argument("--backend", choices=["auto", *BACKENDS], default="auto",
                   help="how directions are drawn: cpu and triton share the philox stream, torch draws "
                   "torch-generator (auto: philox where its kernel works); results.json records the stream")
    f.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    _add_dtype_option(f)
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--tuning", choices=["full", "lora", "prefix", "prompt", "head", "blocks", "tt-adapter", "sparse-delta"],
                   default="full",
                   help="what trains; blocks: the top --blocks K transformer blocks and the final norm; tt-adapter: "
                        "AdaZeta's tensor-train adapters after each block's attention and MLP; prompt: 10 soft-prompt "
                        "tokens (peft); sparse-delta: SpIEL's deltas on a --density fraction of each block's "
                        "Linear weights, dropped and regrown every --regrow-every steps")
    f.add_argument("--density", type=float, default=None, help="with --tuning sparse-delta: the fraction of "
                   "each matrix's entries that train (default 0.01)")
    f.add_argument("--regrowth", choices=["random", "probe"], default=None,
                   help="with --tuning sparse-delta: random new entries, or candidates trained beside the set and "
                        "promoted by the size of their ZO updates (default random)")
    f.add_argument("--regrow-every", type=int, default=None,
                   help="with --tuning sparse-delta: steps between drop-and-regrow updates (default 50)")
    f.add_argument("--blocks", type=int, default=None, help="with --tuning blocks: how many top blocks train")
    f.add_argument("--no-activation-cache", action="store_true",
                   help="with --tuning blocks: run the whole model at every forward instead of the top blocks "
                        "on the cached activations below them")
    f.add_argument("--objective", choices=["ce", "accuracy", "f1"], default="ce",
                   help="ce: cross-entropy; accuracy: 1 - accuracy; f1: 1 - macro-F1 of a classifier, or for squad "
                        "minus the mean token F1 of the greedy answers (ZO estimators only)")
    f.add_argument("--max-new-tokens", type=int, default=16, help="squad: the longest answer generated")
    f.add_argument("--protocol", choices=["kshot", "mezo"], default="kshot",
                   help="kshot: k per class train and dev; mezo: 1000 train / 500 dev / 1000 test")
    f.add_argument("--eval-every", type=int, default=0, help="dev evaluation interval in steps (default: steps/10)")
    f.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test examples")
    f.add_argument("--test-curve", action="store_true",
                   help="also score the test split at every dev evaluation (test accuracy against forward passes)")
    f.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to OUT/tensorboard (needs the tensorboard package); "
                        "OUT/metrics.jsonl is always written")
    f.add_argument("--checkpoint-every", type=int, default=50)
    f.add_argument("--snapshot-every", type=int, default=None,
                   help="also keep the trainable weights every N steps in OUT/snapshots/ (for theory --over-training)")
    f.add_argument("--out", required=True, help="run folder: results.json, curve.png, checkpoint.pt (resumes)")
    f.set_defaults(fn=_finetune)
    v = sub.add_parser("eval", help="zero-shot, in-context or linear-probe accuracy, or that of a fine-tuned run")
    v.add_argument("--model", default="smollm2-135m")
    _add_task_options(v)
    v.add_argument("--split", default=None, help="default: the task's labelled held-out split")
    v.add_argument("--limit", type=int, default=None, help="the first N examples of the split")
    v.add_argument("--icl", type=int, default=0, help="in-context demonstrations per class, drawn from train")
    v.add_argument("--linear-probe", action="store_true", help="logistic regression on frozen features, k per class")
    v.add_argument("--run", default=None, help="a `zoo finetune --out` folder: evaluate its trained weights")
    v.add_argument("--json", default=None, help="write the metrics here")
    v.add_argument("--max-new-tokens", type=int, default=16, help="squad: the longest answer generated")
    v.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cpu, or the run's with --run)")
    _add_dtype_option(v)
    v.set_defaults(fn=_eval)
    t = sub.add_parser("theory", help="Hessian effective rank of a real model's fine-tuning loss")
    tsub = t.add_subparsers(dest="theory_command", required=True)
    r = tsub.add_parser("effective-rank", help="tr H, lambda_max, r = tr H / lambda_max and the SLQ spectrum")
    r.add_argument("--model", default="smollm2-135m")
    _add_task_options(r)
    r.add_argument("--no-prompt", action="store_true", help="a classification head (fitted first) instead of the template")
    r.add_argument("--params", choices=["last-mlp", "last-block", "head", "all"], default="last-mlp",
                   help="the parameter subset whose Hessian is measured")
    r.add_argument("--matvecs", type=int, default=45, help="HVPs for the Hutch++ trace")
    r.add_argument("--lanczos", type=int, default=15,
                   help="HVPs for lambda_max (0: the Hutch++ sketch's Ritz value, no extra HVP)")
    r.add_argument("--slq-steps", type=int, default=20)
    r.add_argument("--slq-probes", type=int, default=2)
    r.add_argument("--run", default=None,
                   help="measure at the weights of a `zoo finetune` run's checkpoint (its model, task, k and seed)")
    r.add_argument("--over-training", action="store_true",
                   help="with --run: measure at the start and at each of its snapshots (zoo finetune --snapshot-every)")
    r.add_argument("--json", default=None)
    r.add_argument("--plot", default=None,
                   help="PNG of the SLQ spectral density (with --over-training: r, r+ and lambda_max over steps)")
    r.set_defaults(fn=_theory_rank)
    w = tsub.add_parser("slowdown", help="MeZO's predicted slowdown gamma against measured steps to SGD's loss")
    _add_task_options(w)
    w.add_argument("--model", default="smollm2-135m")
    w.add_argument("--params", default="last-mlp", choices=["last-mlp", "last-block", "head", "all"])
    w.add_argument("--n", type=int, nargs="+", default=[1, 4, 16], help="directions per step to compare")
    w.add_argument("--sgd-steps", type=int, default=20)
    w.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="ZO direction seeds")
    w.add_argument("--eta-scale", type=float, default=1.0, help="SGD's lr as a multiple of 1/lambda_max")
    w.add_argument("--eps", type=float, default=1e-3)
    w.add_argument("--matvecs", type=int, default=45, help="HVPs for the trace (Hutch++)")
    w.add_argument("--json", default=None)
    w.add_argument("--plot", default=None)
    w.set_defaults(fn=_theory_slowdown)
    b = sub.add_parser("bench", help="run a benchmark suite (every registered estimator, same forward budget)")
    b.add_argument("suite", help="a preset (smoke, cpu, cpu-long, gpu, synthetic) or a suite .json file")
    b.add_argument("--out", required=True, help="folder for runs/, summary.md and plots; reruns resume it")
    b.add_argument("--report-only", action="store_true", help="only rebuild summary.md and the plots")
    b.add_argument("--docs", default=None, help="also publish summary.md and its plots as this markdown file")
    b.add_argument("--quiet", action="store_true", help="no progress bars (transformers' loading bars included)")
    b.add_argument("--only", nargs="+", metavar="KEY=VALUES", default=None,
                   help="run only these runs, e.g. model=minilm-l6 task=rte method=mezo-sgd,lezo seed=0; "
                        "the report still covers the whole suite, and a second `zoo bench` beside a running "
                        "one takes runs the first has not")
    b.add_argument("--jobs", type=int, default=1,
                   help="processes that split the runs (each gets torch threads / jobs); the one-batch sections "
                        "and baselines run first, alone")
    b.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    b.set_defaults(fn=_bench)
    p = sub.add_parser("prune", help="structured pruning by policy-gradient masks (arXiv 2406.10576) against "
                                     "magnitude pruning: perplexity on held-out SQuAD paragraphs, SST-2 accuracy")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--units", choices=["mlp", "heads"], default="mlp", help="MLP channels or attention heads")
    p.add_argument("--keep", type=float, default=0.5, help="the fraction of units kept")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--samples", type=int, default=4, help="masks sampled (forward passes) per step")
    p.add_argument("--lr", type=float, default=0.05, help="step size on the keep-probabilities")
    p.add_argument("--batch-size", type=int, default=8, help="calibration paragraphs per step")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per paragraph")
    p.add_argument("--held-out", type=int, default=64, help="test-pool paragraphs for perplexity")
    p.add_argument("--sst2-limit", type=int, default=200, help="SST-2 test examples for accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="the data folder (default ../shared/data)")
    p.add_argument("--out", required=True, help="folder for results.json and the resumable state")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=_prune)
    e = sub.add_parser("estimators", help="list the registered estimators")
    e.set_defaults(fn=_estimators)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        from transformers.utils import logging as hf_logging

        # the "Loading weights" bar of from_pretrained: hidden with --quiet, and off a terminal, where
        # its carriage returns would pile up in the log (zoo's own bars print plain lines there)
        hf_logging.disable_progress_bar()
    try:
        args.fn(args)
    except KeyboardInterrupt:
        print(f"zoo {args.command}: interrupted (a finetune run resumes from its checkpoint with the same command)",
              file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"zoo {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

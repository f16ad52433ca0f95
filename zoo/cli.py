"""The `zoo` command line."""

from __future__ import annotations

import argparse
import sys

import zoo


def _demo(args):
    from .demo import run

    r = run(args.out, steps=args.steps, k=args.k, seed=args.seed, lr=args.lr, eps=args.eps,
            estimator=args.estimator, train=args.train, data_dir=args.data_dir)
    m = r["metrics"]
    print(f"dev accuracy {m['dev_accuracy_before']:.3f} -> {m['accuracy']:.3f} on {m['dev_examples']} SST-2 dev "
          f"examples after {r['config']['steps']} steps ({r['forward_passes']} forward passes, "
          f"{r['wall_time_s']:.0f} s); wrote {args.out}/results.json and {args.out}/curve.png")


def _estimators(args):
    for name in zoo.available():
        s = zoo.estimators.spec(name)
        print(f"{name:12s} {s.description}  [extra state: {s.extra_state}; {s.paper}]")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zoo", description="Zeroth-order fine-tuning toolkit")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train an SST-2 head on all-MiniLM-L6-v2 with forward passes only")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--steps", type=int, default=300)
    d.add_argument("--k", type=int, default=16, help="training examples per class")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--lr", type=float, default=0.1)
    d.add_argument("--eps", type=float, default=1e-3)
    d.add_argument("--estimator", default="mezo-sgd")
    d.add_argument("--train", choices=["head", "all"], default="head")
    d.add_argument("--data-dir", default=None, help="folder holding glue-sst2/ (default: $ZOO_DATA_DIR or ../shared/data)")
    d.set_defaults(fn=_demo)
    e = sub.add_parser("estimators", help="list the registered estimators")
    e.set_defaults(fn=_estimators)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .demo import DemoError

    try:
        args.fn(args)
    except (ValueError, DemoError) as e:
        print(f"zoo {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

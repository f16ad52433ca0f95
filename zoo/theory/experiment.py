"""The slowdown experiment: does MeZO need gamma times SGD's steps, as Lemma 2 / Theorem 1 predict?

On one fixed batch (full-batch, so SGD is gradient descent and only the
directions are random), restricted to a parameter subset:

1. measure r = tr H / lambda_max at the start (Hutch++ and Lanczos; r+ from
   the SLQ density where tr H <= 0);
2. run SGD with eta = eta_scale / lambda_max for `sgd_steps` steps; its final
   loss is the target;
3. for each n, run n-SPSA (Gaussian) from the same start with the theory's
   learning rate eta / gamma(r, n), and count the steps until its loss first
   reaches the target (cap: max_factor x gamma x sgd_steps);
4. the measured slowdown is steps_ZO / sgd_steps (median over seeds), to set
   against the predicted gamma.

gamma compares ZO's expected decrease with SGD's descent-lemma bound, so the
measured ratio can differ from it in either direction; this is what the
experiment reports.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
from torch import nn

from .. import estimators
from .measure import measure
from .slowdown import gamma


def measure_slowdown(built, examples, *, subset: str = "last-mlp", ns=(1, 4, 16), sgd_steps: int = 20,
                     seeds=(0, 1, 2), eta_scale: float = 1.0, eps: float = 1e-3, max_factor: float = 3.0,
                     matvecs: int = 45, lanczos_steps: int = 15, progress=None) -> dict:
    model, scorer = built.model, built.scorer
    t0 = time.time()
    rank = measure(built, examples, subset, matvecs, lanczos_steps, slq_steps=10, slq_probes=1)
    params = [p for p in model.parameters() if p.requires_grad]
    enc = scorer.encode(examples)

    def loss() -> float:
        with torch.no_grad():
            return nn.functional.cross_entropy(scorer(model, enc).float(), enc.labels).item()

    start = [p.detach().clone() for p in params]

    def reset():
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)

    # An indefinite H (common away from a minimum) can make tr H <= 0; the theory then
    # applies to H's positive part, r+ = tr(H+) / lambda_max from the SLQ density.
    r_used, r_source = (rank["r"], "r") if rank["r"] > 0 else (rank["slq"]["r_plus"], "r_plus")
    eta = eta_scale / rank["lambda_max"]
    sgd = [loss()]
    for _ in range(sgd_steps):
        with torch.enable_grad():
            grads = torch.autograd.grad(nn.functional.cross_entropy(scorer(model, enc).float(), enc.labels), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(g, alpha=eta)
        sgd.append(loss())
    target = sgd[-1]
    if not target < sgd[0]:
        reset()
        raise ValueError(f"SGD at eta = {eta_scale:g}/lambda_max raised the loss from {sgd[0]:.4f} to {target:.4f} "
                         f"in {sgd_steps} steps (the Hessian changes along the way); lower --eta-scale")
    rows = []
    for n in ns:
        g = gamma(r_used, n)
        cap = math.ceil(max_factor * g * sgd_steps)
        per_seed, curves = [], []
        for seed in seeds:
            reset()
            opt = estimators.get("n-spsa", model, n=n, lr=eta / g, eps=eps, seed=seed)
            curve, reached = [], None
            for t in range(cap):
                curve.append(float(opt.step(lambda: nn.functional.cross_entropy(scorer(model, enc).float(),
                                                                               enc.labels))))
                if curve[-1] <= target:  # the loss at the step's start (mean of the 2n probes)
                    reached = t
                    break
                if progress:
                    progress(n, seed, t, curve[-1])
            curve.append(loss())
            if reached is None and curve[-1] <= target:
                reached = len(curve) - 1
            per_seed.append(reached)
            curves.append(curve)
        done = [s for s in per_seed if s is not None]
        rows.append({"n": n, "gamma": g, "lr": eta / g, "steps": per_seed, "cap": cap,
                     "measured": statistics.median(done) / sgd_steps if len(done) == len(per_seed) else None,
                     "reached": f"{len(done)}/{len(per_seed)}", "curves": curves})
    reset()
    return {"r": rank["r"], "r_stderr": rank["r_stderr"], "r_plus": rank["slq"]["r_plus"], "r_used": r_used,
            "r_source": r_source, "lambda_max": rank["lambda_max"], "trace": rank["trace"],
            "dim": rank["dim"], "params": rank["params"], "eta_sgd": eta, "sgd_steps": sgd_steps, "sgd": sgd,
            "target_loss": target, "eps": eps, "seeds": list(seeds), "rows": rows, "seconds": time.time() - t0}

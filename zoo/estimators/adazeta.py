"""AdaZeta's estimator: n-SPSA whose query count grows over training."""

from __future__ import annotations

import math

from .mezo import MeZOSGD
from .schedule import QuerySchedule

#: AdaZeta's schedule at its own scale (yifanycc/AdaZeta, run_all_large_exp.sh): beta (SHRINK)
#: 0.85, Q_max 15, NUM 20 queries reached after E = 160 epochs (10,000 steps of batch 16 over
#: 1,000 examples: 63 steps an epoch), so alpha = log(NUM / beta) / log(E), as its run.py sets it.
ADAZETA_SCHEDULE = {"beta": 0.85, "alpha": round(math.log(20 / 0.85) / math.log(160), 3), "n_max": 15, "every": 63}


class AdaZeta(MeZOSGD):
    """AdaZeta's zeroth-order update (Yang et al., "AdaZeta: Adaptive Zeroth-Order Tensor-Train
    Adaption for Memory-Efficient Large Language Models Fine-Tuning", EMNLP 2024, arXiv 2406.18060).

    n-SPSA on one minibatch with a query count fixed per block k of `every` steps:

        n_k   = min(max(floor(beta * k^alpha), 1), n_max),   k = step // every + 1
        d_j   = (L(theta + eps z_j) - L(theta - eps z_j)) / 2,   j = 1..n_k
        g_hat = (1/n_k) sum_j (d_j / eps) z_j
        theta <- theta - lr (g_hat + weight_decay * theta)

    The paper trains tensor-train adapters with it (`zoo finetune --tuning tt-adapter`, or
    `zoo.tuning.add_tt_adapters`); the estimator itself perturbs whatever it is given. The
    default schedule is AdaZeta's at its own scale (`ADAZETA_SCHEDULE`): one query per step for
    the first 189 steps, two from step 189, four from 756, 15 from 6,300. AdaZeta's lr 1e-4 and
    eps 1e-3 are its defaults here; its decay of 0.01 is left to `weight_decay` (it skipped
    biases and norms by name; zoo decays what the param groups say).

    Args:
        model_or_params: nn.Module, parameters, or param groups.
        lr, eps, weight_decay, seed: as MeZOSGD.
        query_schedule: a QuerySchedule or a dict of beta, alpha, n_max, every.
        **options: as MeZOSGD (sampler, perturbation, backend, ...).
    """

    def __init__(self, model_or_params, lr: float = 1e-4, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 query_schedule: QuerySchedule | dict | None = None, seed: int = 0, **options):
        if "n" in options:
            raise ValueError("n: adazeta sets the directions of each step from its query_schedule")
        schedule = QuerySchedule.coerce(query_schedule) or QuerySchedule(**ADAZETA_SCHEDULE)
        super().__init__(model_or_params, lr=lr, eps=eps, weight_decay=weight_decay, seed=seed,
                         query_schedule=schedule, **options)

"""Effective rank of a real model's loss on a real task batch: what `zoo theory effective-rank` runs.

The loss is the fine-tuning loss of zoo.finetune: cross-entropy over the
candidates' log-likelihoods under a template (prompt), or over a
classification head on the raw text (no prompt). A fresh head is zero, so the
loss would not depend on the body and H would vanish; the no-prompt head is
therefore first fitted to the batch by L-BFGS with the body frozen (a linear
probe), the state a prompt-free fine-tuning run starts from in practice.

Parameters are restricted to a subset (HVPs over all 135M weights take
minutes each on a CPU): `last-mlp` (default), `last-block`, `head` or `all`.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .density import slq
from .hvp import HessianOperator
from .rank import effective_rank
from .slowdown import gamma

SUBSETS = ("last-mlp", "last-block", "head", "all")


def _last_block(model: nn.Module) -> tuple[str, nn.Module]:
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ValueError("no stack of layers (nn.ModuleList) found; use --params all")
    name, layers = max(lists, key=lambda nm: len(nm[1]))
    return f"{name}.{len(layers) - 1}", layers[-1]


def select_parameters(model: nn.Module, subset: str, head: nn.Module | None = None) -> tuple[str, list]:
    """(description, parameters) of a named subset."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown parameter subset {subset!r}: use one of {', '.join(SUBSETS)}")
    if subset == "all":
        return "all parameters", list(model.parameters())
    if subset == "head":
        if head is None:
            raise ValueError("--params head needs --no-prompt (a classification head)")
        return "classification head", list(head.parameters())
    name, block = _last_block(model)
    if subset == "last-mlp":
        mlps = [(n, m) for n, m in block.named_modules() if n.split(".")[-1] in ("mlp", "intermediate", "ffn")]
        if mlps:
            sub, mlp = mlps[0]
            params = list(mlp.parameters())
            if sub == "intermediate" and hasattr(block, "output"):  # BERT splits its MLP in two
                params += list(block.output.dense.parameters())
            return f"{name}.{sub}", params
    return name, list(block.parameters())


def fit_head(model, scorer, enc, head: nn.Module, l2: float = 1e-3, iterations: int = 200) -> float:
    """Fit the head to the batch with the body frozen; returns the fitted loss.

    The fit starts from zero rather than from the head's current weights, so that measuring twice
    measures the same Hessian: the L2 term makes the problem strictly convex in the weight, and a
    warm start from an earlier fit stops LBFGS at a point a few 1e-6 away from the first one.
    """
    captured = {}
    hook = head.register_forward_hook(lambda m, i, o: captured.__setitem__("x", i[0].detach()))
    with torch.no_grad():
        scorer(model, enc)
    hook.remove()
    x = captured["x"]
    weight = torch.zeros_like(head.weight, requires_grad=True)
    bias = torch.zeros_like(head.bias, requires_grad=True) if head.bias is not None else None
    opt = torch.optim.LBFGS([w for w in (weight, bias) if w is not None], max_iter=iterations,
                            line_search_fn="strong_wolfe")

    def logits():
        z = x @ weight.T + (bias if bias is not None else 0)
        if z.dim() == 3:  # a decoder's head runs on every position; its classifier reads the last real one
            z = z[torch.arange(len(z)), enc.attention_mask.sum(1) - 1]
        return z

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(logits(), enc.labels) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)
        return nn.functional.cross_entropy(logits(), enc.labels).item()


def measure(built, examples, subset: str = "last-mlp", matvecs: int = 45, lanczos_steps: int = 15,
            slq_steps: int = 20, slq_probes: int = 2, seed: int = 0, hvp_mode: str = "rev-rev") -> dict:
    """tr H, lambda_max, r (Hutch++ and Lanczos) and the SLQ ranks, for the loss on `examples`."""
    model, scorer = built.model, built.scorer
    enc = scorer.encode(examples)
    head = None
    fitted = None
    if built.mode == "head":
        head = getattr(model, "score", None) or getattr(model, "classifier", None) or getattr(model, "head")
        fitted = fit_head(model, scorer, enc, head)
    where, params = select_parameters(model, subset, head)
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)

    def loss_fn(m, batch):
        return nn.functional.cross_entropy(scorer(m, batch).double(), batch.labels)

    op = HessianOperator(model, loss_fn, enc, params=params, mode=hvp_mode)
    t0 = time.time()
    res = effective_rank(op, op.dim, num_matvecs=matvecs, lanczos_steps=lanczos_steps, seed=seed)
    density = slq(op, op.dim, steps=slq_steps, probes=slq_probes, seed=seed + 1)
    with torch.no_grad():
        loss = loss_fn(model, enc).item()
    return {
        **res.to_dict(),
        "loss": loss,
        "fitted_head_loss": fitted,
        "params": where,
        "batch": len(examples),
        "gamma": {str(n): gamma(res.r, n) if res.r > 0 else None for n in (1, 4, 16)},
        "slq": {**density.ranks(), "lambda_max": density.lambda_max, "lambda_min": float(density.nodes.min()),
                "matvecs": density.matvecs, "nodes": density.nodes.tolist(), "weights": density.weights.tolist()},
        "hvp_seconds": time.time() - t0,
        "total_matvecs": op.matvecs,
    }

"""Figures of the theory measurements."""

from __future__ import annotations

import torch
from ..files import save_figure


def plot_density(results: dict, path, title: str) -> None:
    """Gaussian-smoothed SLQ densities, one curve per entry of `results` (each with an "slq" dict)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, r in results.items():
        nodes = torch.tensor(r["slq"]["nodes"], dtype=torch.float64)
        weights = torch.tensor(r["slq"]["weights"], dtype=torch.float64)
        lo, hi = nodes.min().item(), nodes.max().item()
        span = max(hi - lo, 1e-12)
        grid = torch.linspace(lo - 0.1 * span, hi + 0.1 * span, 800, dtype=torch.float64)
        width = 0.01 * span
        diff = grid[:, None] - nodes[None, :]
        dens = (torch.exp(-0.5 * (diff / width) ** 2) / (width * (2 * torch.pi) ** 0.5)) @ weights
        ax.semilogy(grid, dens.clamp(min=1e-8), label=f"{key} (λmax {r['slq']['lambda_max']:.3g}, r {r['r']:.3g})")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("smoothed SLQ density")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_slowdown(result: dict, path, title: str) -> None:
    """Loss curves of SGD and n-SPSA, and the measured slowdown against the predicted gamma."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(range(len(result["sgd"])), result["sgd"], "k-", lw=2, label=f"SGD, eta = {result['eta_sgd']:.3g}")
    for row in result["rows"]:
        for i, c in enumerate(row["curves"]):
            a.plot(range(len(c)), c, lw=0.8, alpha=0.7, color=f"C{row['n'] % 10}",
                   label=f"n-SPSA n={row['n']}, eta/gamma" if i == 0 else None)
    a.axhline(result["target_loss"], ls="--", c="gray", lw=0.8, label="target (SGD's final loss)")
    a.set_xlabel("steps")
    a.set_ylabel("loss on the batch")
    a.legend(fontsize=7)
    pred = [row["gamma"] for row in result["rows"]]
    meas = [row["measured"] for row in result["rows"]]
    top = max([*pred, *[m for m in meas if m is not None], 1.0]) * 1.15
    b.plot([0, top], [0, top], ls="--", c="gray", lw=0.8, label="measured = predicted")
    for row in result["rows"]:
        if row["measured"] is not None:
            b.plot(row["gamma"], row["measured"], "o", color=f"C{row['n'] % 10}", label=f"n={row['n']}")
    b.set_xlim(0, top)
    b.set_ylim(0, top)
    b.set_xlabel("predicted gamma = (r + n + 1) / n")
    b.set_ylabel("measured steps_ZO / steps_SGD (median over seeds)")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_trajectory(points: list[dict], path, title: str) -> None:
    """r (Hutch++ / Lanczos, with its standard error), r+ (SLQ) and lambda_max against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in points]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.errorbar(steps, [p["r"] for p in points], yerr=[p["r_stderr"] for p in points], fmt="o-", label="r = tr H / λmax")
    a.plot(steps, [p["slq"]["r_plus"] for p in points], "s--", label="r₊ = tr H₊ / λmax (SLQ)")
    a.set_xlabel("training step")
    a.set_ylabel("effective rank")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    b.plot(steps, [p["lambda_max"] for p in points], "o-", label="λmax (Lanczos)")
    b.plot(steps, [p["trace"] for p in points], "s--", label="tr H (Hutch++)")
    b.set_xlabel("training step")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

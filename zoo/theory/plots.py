"""Figures of the theory measurements."""

from __future__ import annotations

import torch


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
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""curve.png: training loss and dev (and, where scored, test) accuracy against forward passes."""

from __future__ import annotations


def plot_curve(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, c = result["history"], result["config"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(h["forward_passes"], h["loss"], lw=0.6, alpha=0.4, label="minibatch")
    w = max(len(h["loss"]) // 20, 1)
    if len(h["loss"]) >= w > 1:
        smooth = [sum(h["loss"][i - w + 1:i + 1]) / w for i in range(w - 1, len(h["loss"]))]
        a.plot(h["forward_passes"][w - 1:], smooth, lw=1.5, label=f"mean of {w}")
    a.set_xlabel("forward passes")
    a.set_ylabel(f"training loss ({c['objective']})")
    a.legend()
    ev, metric = h["evals"], result.get("metric", "accuracy")  # squad runs report token F1
    b.plot([e["forward_passes"] for e in ev], [e[f"dev_{metric}"] for e in ev], "o-", label="dev")
    if all(f"test_{metric}" in e for e in ev):
        b.plot([e["forward_passes"] for e in ev], [e[f"test_{metric}"] for e in ev], "s-", label="test")
    final = result["metrics"][metric]
    b.axhline(final, ls="--", c="gray", label=f"test {final:.3f}")
    b.set_xlabel("forward passes")
    b.set_ylabel(metric.replace("f1", "token F1"))
    b.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{c['estimator']} on {c['task']} ({c['model']}, {c['mode']}, {c['tuning']}, k={c['k']}, seed {c['seed']})")
    fig.tight_layout()
    from ..files import save_figure

    save_figure(fig, path, dpi=110)
    plt.close(fig)

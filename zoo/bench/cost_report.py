"""The summary's section for DIR/step_cost.json: step time and memory per method and config."""

from __future__ import annotations

import statistics
from pathlib import Path
from ..files import read_json, save_figure

MIB = 1 / 2**20


def _ratios(rows: list[dict]) -> list[dict]:
    inf = next(r for r in rows if r["method"] == "inference")
    work_inf = max(inf["peak_bytes"] - inf["base_bytes"], 1)
    return [{**r, "time_ratio": r["median_step_s"] / inf["median_step_s"],
             "peak_ratio": r["peak_bytes"] / inf["peak_bytes"],
             "work_ratio": (r["peak_bytes"] - r["base_bytes"]) / work_inf} for r in rows]


def _plot(configs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [r["method"] for r in configs[0]["rows"]]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(methods)), 3.8))
    width = 0.8 / len(configs)
    for j, c in enumerate(configs):
        rows = {r["method"]: r for r in _ratios(c["rows"])}
        xs = [i + j * width for i in range(len(methods))]
        axes[0].bar(xs, [rows[m]["time_ratio"] for m in methods], width, label=f"{c['name']} ({c['dtype']})")
        axes[1].bar(xs, [rows[m]["peak_ratio"] for m in methods], width, label=f"{c['name']} ({c['dtype']})")
    for ax, label in zip(axes, ["step time / two inference forwards", "peak memory / inference's"]):
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(methods))], methods, rotation=45, fontsize=8)
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _when(c: dict) -> str:
    m = c.get("measured")
    return f"; measured {m['date']}, {m['machine']}, {m['threads']} threads, torch {m['torch']}" if m else ""


def _modes(rows: list[dict]) -> str:
    # results measured before the probe recorded its mode have none (they ran in place, the default then)
    modes = sorted({r["perturbation"] for r in rows if r.get("perturbation")})
    return f", ZO steps perturb {' / '.join(modes)}" if modes else ""


def paired_ratios(side_by_side: dict, method: str, against: str) -> list[float]:
    """Method's step time / against's, round by round (`cost.probe_side_by_side`)."""
    t = side_by_side["step_s"]
    return [a / b for a, b in zip(t[method], t[against])]


def paired_ratio(side_by_side: dict, method: str, against: str) -> float:
    """The median over rounds of `paired_ratios`."""
    return statistics.median(paired_ratios(side_by_side, method, against))


def _configs(root: Path) -> list[dict]:
    """The measured configs of DIR/step_cost.json; none when the suite has no cost section."""
    path = root / "step_cost.json"
    return read_json(path)["configs"] if path.exists() else []


def side_by_side_for(root: Path, name: str) -> dict | None:
    """The side-by-side timing of the cost config called `name`, with its batch and seq, if it has one."""
    for c in _configs(root):
        if c["name"] == name and "side_by_side" in c:
            return {**c["side_by_side"], "batch": c["batch"], "seq": c["seq"]}
    return None


def has_side_by_side(root: Path) -> bool:
    return any("side_by_side" in c for c in _configs(root))


def _side_by_side_table(c: dict) -> list[str]:
    s = c["side_by_side"]
    methods = s["methods"]
    base = "mezo-sgd" if "mezo-sgd" in methods else None
    lines = [f"Side by side, in one process: {s['rounds']} rounds, each stepping every method once, each round "
             "starting one method later; a ratio is taken within each round, then its median over rounds"
             + _when(s) + ".", "",
             "| method | median step s | / two forwards, same round |" + (" / mezo-sgd, same round |" if base else ""),
             "|---|---|---|" + ("---|" if base else "")]
    for m in methods:
        row = (f"| {m} | {statistics.median(s['step_s'][m]):.4f} "
               f"| {paired_ratio(s, m, 'inference'):.3f} |")
        lines.append(row + (f" {paired_ratio(s, m, base):.3f} |" if base else ""))
    return lines + [""]


def cost_section(root: Path) -> list[str]:
    configs = _configs(root)
    if not configs:
        return []
    _plot(configs, root / "step_cost.png")
    lines = ["## Step time and memory on random-init configs", "",
             "Each method runs in a fresh process on a model built from the config with random weights and random "
             "token ids (`zoo/bench/cost.py`). A step of *inference* is two forwards under no_grad; a ZO step is "
             "`opt.step(closure)`; sgd and adam are forward, backward and step. Time: median of the steps after a "
             "warm-up step. Peak: over all steps; *working* is peak − memory before the first step. Each method "
             "is timed in its own process, minutes apart, so the time ratios carry the machine's drift between "
             "them; where a config has a side-by-side table below it, compare speeds by that one.", ""]
    for c in configs:
        rows = _ratios(c["rows"])
        first = rows[0]
        lines += [f"### {c['name']}: {first['params'] / 1e6:.1f}M parameters, {c['dtype']}, batch {c['batch']} x "
                  f"sequence {c['seq']}, on {first['device']} ({first['measure']}), {c['rounds']} timed steps"
                  + _modes(rows) + _when(c), "",
                  "| method | median step s | / two forwards | peak MiB | peak / inference | working MiB "
                  "| working / inference's | extra state MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['median_step_s']:.4f} | {r['time_ratio']:.3f} "
                         f"| {r['peak_bytes'] * MIB:.0f} | {r['peak_ratio']:.3f} "
                         f"| {(r['peak_bytes'] - r['base_bytes']) * MIB:.1f} | {r['work_ratio']:.2f} "
                         f"| {r['extra_state_bytes'] * MIB:.2f} |")
        lines.append("")
        if "side_by_side" in c:
            lines += _side_by_side_table(c)
    return lines + ["![step time and peak memory against inference](step_cost.png)", ""]

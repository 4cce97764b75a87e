"""The report's plots, one PNG each, drawn with matplotlib's Agg backend (imported when first needed).

Every function takes the results.json entries (with ``run`` added) and a folder, and returns the file
name it wrote, or None when the runs hold nothing to plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rscaffold.signals import Signal

Entry = dict[str, Any]
SIGNAL_COLOURS = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#1f77b4", "#ff7f0e", "#7f7f7f"]
"""One colour per signal, in signal-id order; the trace viewer uses the same ones."""


def label(e: Entry) -> str:
    return f"{e['method']} / {e['signal_source']}\n{e['benchmark']}:{e['split']}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    _pyplot().close(fig)
    return name


def accuracy_by_method(entries: list[Entry], out: Path) -> str | None:
    """Pass@1 (strict) per entry with its bootstrap interval; flexible as a hollow marker."""
    rows = [e for e in entries if e["pass@1_strict"]["mean"] is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows)), 4))
    x = range(len(rows))
    means = [e["pass@1_strict"]["mean"] for e in rows]
    lo = [m - e["pass@1_strict"]["lo"] for m, e in zip(means, rows, strict=True)]
    hi = [e["pass@1_strict"]["hi"] - m for m, e in zip(means, rows, strict=True)]
    ax.bar(x, means, yerr=[lo, hi], capsize=4, color="#1f77b4", label="strict (95% CI)")
    ax.plot(x, [e["pass@1_flexible"]["mean"] for e in rows], "o", mfc="none", color="k", label="flexible")
    ax.set_xticks(list(x), [label(e) for e in rows], fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("Pass@1")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(fig, out, "accuracy_by_method.png")


def accuracy_by_ops(entries: list[Entry], out: Path) -> str | None:
    rows = [e for e in entries if e.get("accuracy_by_ops")]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for e in rows:
        ops = sorted(e["accuracy_by_ops"], key=int)
        ax.plot([int(k) for k in ops], [e["accuracy_by_ops"][k]["accuracy"] for k in ops], "o-", label=label(e))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("operations in the problem")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6)
    return _save(fig, out, "accuracy_by_ops.png")


def tokens_vs_accuracy(entries: list[Entry], out: Path) -> str | None:
    rows = [e for e in entries if e.get("tokens_per_answer") and e["pass@1_strict"]["mean"] is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for e in rows:
        ax.scatter(e["tokens_per_answer"], e["pass@1_strict"]["mean"], label=label(e))
    ax.set_xlabel("tokens per answer")
    ax.set_ylabel("Pass@1 (strict)")
    ax.legend(fontsize=6)
    return _save(fig, out, "tokens_vs_accuracy.png")


def signal_distribution(entries: list[Entry], out: Path) -> str | None:
    rows = [e for e in entries if e.get("signals", {}).get("distribution")]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows)), 4))
    bottom = [0.0] * len(rows)
    for s in Signal:
        shares = [e["signals"]["distribution"].get(s.key, 0) / sum(e["signals"]["distribution"].values()) for e in rows]
        ax.bar(range(len(rows)), shares, bottom=bottom, color=SIGNAL_COLOURS[s], label=s.key)
        bottom = [b + v for b, v in zip(bottom, shares, strict=True)]
    ax.set_xticks(range(len(rows)), [label(e) for e in rows], fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("share of steps")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1, 1))
    return _save(fig, out, "signal_distribution.png")


def transition_heatmaps(entries: list[Entry], out: Path, most: int = 4) -> str | None:
    """Row-normalised signal transitions of up to ``most`` entries, side by side."""
    rows = [e for e in entries if e.get("signals", {}).get("transitions")][:most]
    if not rows:
        return None
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.8), squeeze=False)
    for ax, e in zip(axes[0], rows, strict=True):
        m = np.asarray(e["signals"]["transitions"], dtype=float)
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        keys = [k[:4] for k in e["signals"]["keys"]]
        ax.set_xticks(range(len(keys)), keys, fontsize=7, rotation=90)
        ax.set_yticks(range(len(keys)), keys, fontsize=7)
        ax.set_title(label(e).replace("\n", " "), fontsize=7)
        ax.set_xlabel("next signal", fontsize=7)
    return _save(fig, out, "transitions.png")


def tau_sweep(entries: list[Entry], out: Path) -> str | None:
    """Pass@1 and tokens against the gate's threshold tau, when the runs decoded with several taus."""
    curves: dict[str, list[Entry]] = {}
    for e in entries:
        if e.get("tau") is not None:
            curves.setdefault(f"{e['method']} / {e['benchmark']}:{e['split']}", []).append(e)
    curves = {k: sorted(v, key=lambda e: e["tau"]) for k, v in curves.items() if len(v) > 1}
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in curves.items():
        ax.plot([e["tau"] for e in rows], [e["pass@1_strict"]["mean"] for e in rows], "o-", label=name)
    ax.set_xlabel("tau (gate threshold)")
    ax.set_ylabel("Pass@1 (strict)")
    ax.legend(fontsize=6)
    return _save(fig, out, "tau_sweep.png")


PLOTS = {
    "Accuracy by method (strict, 95% bootstrap CI; circles: flexible)": accuracy_by_method,
    "Accuracy by number of operations": accuracy_by_ops,
    "Tokens per answer against accuracy": tokens_vs_accuracy,
    "Signal distribution": signal_distribution,
    "Signal transitions (row-normalised)": transition_heatmaps,
    "Gate threshold sweep": tau_sweep,
}

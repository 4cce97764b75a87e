"""The report's plots, one PNG each, drawn with matplotlib's Agg backend (imported when first needed).

Every figure takes the results.json entries (with ``run`` added) and returns a matplotlib Figure, or None
when the entries hold nothing to plot. Figures are small multiples, one panel per benchmark split, with
the variants' names on the axis or in one legend outside the panels, and each variant keeps its colour in
every figure (:class:`Palette`). Sizes are fixed in inches at :data:`DPI`, at most :data:`MAX_WIDTH`
wide, so the page (1200 px wide) shows every PNG at its drawn size.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

from rscaffold.signals import Signal

Entry = dict[str, Any]
DPI = 100
"""Pixels per inch of the PNGs: 9 pt text is 12.5 px, near the page's 14 px."""
MAX_WIDTH = 11.5
"""The widest figure in inches: 1150 px, within the page's 1200 px, so a browser never shrinks it."""
MIN_WIDTH = 4.5
"""The narrowest figure in inches, so that a single panel is not cramped."""
COLUMNS = 4
"""Panels per row; more splits wrap onto further rows."""
FONT = 8
"""Points of tick labels and legends."""
SIGNAL_COLOURS = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#1f77b4", "#ff7f0e", "#7f7f7f"]
"""One colour per signal, in signal-id order; the trace viewer uses the same ones."""
VARIANT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                   "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]  # fmt: skip
"""Matplotlib's tab20, strong shades first, so that up to ten variants get clearly distinct colours."""


class Palette:
    """Each entry's name in the figures and its variant's colour. A variant is (run, student, variant) as
    the headline's rows are, seeds sharing its colour; colours follow the order of the entries, so a
    variant has the same colour in every figure of one report."""

    def __init__(self, entries: list[Entry]) -> None:
        self.several_runs = len({e.get("run") for e in entries}) > 1
        variants = list(dict.fromkeys(self.variant(e) for e in entries))
        self.colours = {v: VARIANT_COLOURS[i % len(VARIANT_COLOURS)] for i, v in enumerate(variants)}
        seeds: dict[str, set] = defaultdict(set)
        for e in entries:
            seeds[self.variant(e)].add(e.get("seed"))
        self.seeded = {v for v, s in seeds.items() if len(s) > 1}

    def _who(self, e: Entry, what: str) -> str:
        who = f"{e.get('student') or e['method']} / {what}"
        return f"{Path(e['run']).name}: {who}" if self.several_runs else who

    def variant(self, e: Entry) -> str:
        return self._who(e, e.get("variant") or e["signal_source"])

    def name(self, e: Entry) -> str:
        """The variant, and the seed where the variant has several."""
        v = self.variant(e)
        return f"{v} s{e.get('seed')}" if v in self.seeded else v

    def sweep(self, e: Entry) -> str:
        """The tau sweep ``e`` belongs to: its student's variants of one signal source (and seed)."""
        s = self._who(e, f"{e['signal_source']} at several taus")
        return f"{s} s{e.get('seed')}" if self.variant(e) in self.seeded else s

    def colour(self, e: Entry) -> str:
        return self.colours[self.variant(e)]


def where(e: Entry) -> str:
    return f"{e['benchmark']}:{e['split']}"


def by_split(rows: list[Entry]) -> dict[str, list[Entry]]:
    """The entries per benchmark split, splits in the order the entries list them."""
    out: dict[str, list[Entry]] = defaultdict(list)
    for e in rows:
        out[where(e)].append(e)
    return dict(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def _grid(panels: int, panel: tuple[float, float], extra: tuple[float, float], legend: list = (), **share: bool):
    """A figure of ``panels`` axes in rows of up to COLUMNS, each ``panel`` inches (width, height), plus
    ``extra`` inches for labels, and the ``legend`` handles in one legend below the panels; constrained
    layout keeps every label inside the figure."""
    cols = min(panels, COLUMNS)
    rows = -(-panels // cols)
    # a legend label of n characters at FONT points takes about 0.07 n inches, its marker and gap 0.7 more
    item = max((0.7 + 0.07 * len(h.get_label()) for h in legend), default=0.0)
    width = min(MAX_WIDTH, max(MIN_WIDTH, cols * panel[0] + extra[0], item + 0.3))
    ncols = max(1, min(len(legend), int((width - 0.3) // item))) if legend else 1
    size = (width, rows * panel[1] + extra[1] + 0.2 * -(-len(legend) // ncols))
    fig, axes = _pyplot().subplots(rows, cols, figsize=size, layout="constrained", squeeze=False, **share)
    for ax in axes.flat[panels:]:
        ax.remove()
    if legend:
        fig.legend(handles=legend, loc="outside lower center", ncols=ncols, fontsize=FONT, frameon=False)
    return fig, list(axes.flat[:panels])


def _variant_handles(palette: Palette, rows: list[Entry], name) -> list:
    """One legend handle per ``name(entry)``, in the order of ``rows``, in the colour of its first entry."""
    from matplotlib.lines import Line2D

    first: dict[str, Entry] = {}
    for e in rows:
        first.setdefault(name(e), e)
    return [Line2D([], [], color=palette.colour(e), marker="o", ms=4, label=n) for n, e in first.items()]


def _wrap(name: str, width: int = 30) -> str:
    return textwrap.fill(name, width, break_on_hyphens=False)


def _rows_height(names: list[str]) -> float:
    """Inches of a panel with ``names`` down its y axis: 0.28 a row (two lines of FONT points), 1.2 for
    its title and x axis."""
    return 0.28 * len(names) + 1.2


def _name_axis(ax, names: list[str]) -> None:
    """Names down the y axis, the first at the top."""
    ax.set_yticks(range(len(names)), [_wrap(n) for n in names], fontsize=FONT)
    ax.set_ylim(len(names) - 0.5, -0.5)


def accuracy_by_method(entries: list[Entry]):
    """Pass@1 (strict) per variant as horizontal bars with the bootstrap interval, one panel per split;
    flexible as a hollow circle."""
    rows = [e for e in entries if e["pass@1_strict"]["mean"] is not None]
    if not rows:
        return None
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    palette = Palette(entries)
    names = list(dict.fromkeys(palette.name(e) for e in rows))
    splits = by_split(rows)
    legend = [Patch(color="#999999", label="strict, 95% CI"),
              Line2D([], [], ls="", marker="o", mfc="none", color="k", label="flexible")]  # fmt: skip
    fig, axes = _grid(len(splits), (2.3, _rows_height(names)), (2.6, 0.2), legend, sharex=True, sharey=True)
    for ax, (split, es) in zip(axes, splits.items(), strict=True):
        y = [names.index(palette.name(e)) for e in es]
        strict = [e["pass@1_strict"] for e in es]
        err = [[p["mean"] - p["lo"] for p in strict], [p["hi"] - p["mean"] for p in strict]]
        ax.barh(y, [p["mean"] for p in strict], color=[palette.colour(e) for e in es], height=0.7)
        ax.errorbar([p["mean"] for p in strict], y, xerr=err, fmt="none", ecolor="k", capsize=2, lw=0.8)
        ax.plot([e["pass@1_flexible"]["mean"] for e in es], y, "o", mfc="none", color="k", ms=4)
        ax.set_title(split, fontsize=9)
        ax.set_xlim(left=0)  # shared: every panel on one scale, fitted to the intervals
        ax.set_xlabel("Pass@1", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(axis="x", alpha=0.3)
    _name_axis(axes[0], names)
    return fig


def _lines_by_split(palette: Palette, rows: list[Entry], axis: tuple[str, str], points, name=None) -> Any:
    """Panels per split, ``axis`` their (x, y) labels, with one curve or point per entry in its variant's
    colour (``points(ax, e, colour)`` draws it), and one legend below the panels of ``name(entry)``
    (default: the variant's name)."""
    handles = _variant_handles(palette, rows, name or palette.name)
    splits = by_split(rows)
    fig, axes = _grid(len(splits), (2.6, 2.4), (0.6, 0.3), handles, sharex=True, sharey=True)
    for ax, (split, es) in zip(axes, splits.items(), strict=True):
        for e in es:
            points(ax, e, palette.colour(e))
        ax.set_title(split, fontsize=9)
        ax.set_xlabel(axis[0], fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(axis[1], fontsize=FONT)
    return fig, axes


def accuracy_by_ops(entries: list[Entry]):
    """Accuracy against the problem's number of operations, one panel per split, one line per variant."""
    rows = [e for e in entries if e.get("accuracy_by_ops")]
    if not rows:
        return None

    def line(ax, e: Entry, colour: str) -> None:
        ops = sorted(e["accuracy_by_ops"], key=int)
        ax.plot([int(k) for k in ops], [e["accuracy_by_ops"][k]["accuracy"] for k in ops], "o-", color=colour, ms=3)

    fig, axes = _lines_by_split(Palette(entries), rows, ("operations in the problem", "accuracy"), line)
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylim(bottom=0)
    return fig


def tokens_vs_accuracy(entries: list[Entry]):
    """Pass@1 (strict, with its interval) against tokens per answer, one panel per split."""
    rows = [e for e in entries if e.get("tokens_per_answer") and e["pass@1_strict"]["mean"] is not None]
    if not rows:
        return None

    def point(ax, e: Entry, colour: str) -> None:
        p = e["pass@1_strict"]
        err = [[p["mean"] - p["lo"]], [p["hi"] - p["mean"]]]
        ax.errorbar([e["tokens_per_answer"]], [p["mean"]], yerr=err, fmt="o", color=colour, ms=4, lw=0.8)

    fig, axes = _lines_by_split(Palette(entries), rows, ("tokens per answer", "Pass@1 (strict)"), point)
    axes[0].set_ylim(bottom=0)
    return fig


def _stack(y: int, counts: dict[str, int]) -> list[tuple[int, float, float, str]]:
    """One stacked bar at ``y``: (y, share, left edge, colour) of each signal, in signal order."""
    total, left, out = sum(counts.values()) or 1, 0.0, []
    for s in Signal:
        share = counts.get(s.key, 0) / total
        out.append((y, share, left, SIGNAL_COLOURS[s]))
        left += share
    return out


def signal_distribution(entries: list[Entry]):
    """Each variant's share of steps per signal as one stacked horizontal bar, one panel per split."""
    rows = [e for e in entries if e.get("signals", {}).get("distribution")]
    if not rows:
        return None
    from matplotlib.patches import Patch

    palette = Palette(entries)
    names = list(dict.fromkeys(palette.name(e) for e in rows))
    splits = by_split(rows)
    legend = [Patch(color=SIGNAL_COLOURS[s], label=s.key) for s in Signal]
    fig, axes = _grid(len(splits), (2.3, _rows_height(names)), (2.6, 0.2), legend, sharex=True, sharey=True)
    for ax, (split, es) in zip(axes, splits.items(), strict=True):
        bars = [_stack(names.index(palette.name(e)), e["signals"]["distribution"]) for e in es]
        y, shares, left, colours = zip(*(bar for stack in bars for bar in stack), strict=True)
        ax.barh(y, shares, left=left, color=colours, height=0.7)  # one call: far faster than one per signal
        ax.set_title(split, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of steps", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    _name_axis(axes[0], names)
    return fig


def transition_heatmaps(entries: list[Entry], most: int = 4):
    """Row-normalised signal transitions of up to ``most`` entries, side by side, one colour scale: the
    first entry of each variant, then further entries in order."""
    palette = Palette(entries)
    rows = [e for e in entries if e.get("signals", {}).get("transitions")]
    first = {palette.name(e): e for e in reversed(rows)}
    rows = sorted(rows, key=lambda e: first[palette.name(e)] is not e)[:most]  # stable: order kept within
    if not rows:
        return None
    import numpy as np

    fig, axes = _grid(len(rows), (2.4, 3.5), (1.6, 0.2), sharey=True)
    for ax, e in zip(axes, rows, strict=True):
        m = np.asarray(e["signals"]["transitions"], dtype=float)
        image = ax.imshow(m / np.maximum(m.sum(axis=1, keepdims=True), 1), vmin=0, vmax=1, cmap="viridis")
        keys = e["signals"]["keys"]
        ax.set_xticks(range(len(keys)), keys, fontsize=FONT, rotation=90)
        ax.set_yticks(range(len(keys)), keys, fontsize=FONT)
        ax.set_title(f"{_wrap(palette.name(e), 36)}\n{where(e)}", fontsize=FONT)
        ax.set_xlabel("next signal", fontsize=FONT)
    axes[0].set_ylabel("signal", fontsize=FONT)
    bar = fig.colorbar(image, ax=axes, shrink=0.8)
    bar.set_label("share of the row", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT)
    return fig


def tau_sweep(entries: list[Entry]):
    """Pass@1 against the gate's threshold tau, one panel per split: one line per student and signal source
    whose variants decoded at several taus (:meth:`Palette.sweep`); where variants share a tau, the first
    entry stands for it (a summaries-only variant at the gate's tau is no point of the sweep)."""
    palette = Palette(entries)
    curves: dict[tuple[str, str], dict[float, Entry]] = defaultdict(dict)
    for e in entries:
        if e.get("tau") is not None and e["pass@1_strict"]["mean"] is not None:
            curves[palette.sweep(e), where(e)].setdefault(e["tau"], e)
    sweeps = {key: [c[t] for t in sorted(c)] for key, c in curves.items() if len(c) > 1}
    if not sweeps:
        return None

    def line(ax, e: Entry, colour: str) -> None:
        c = sweeps[palette.sweep(e), where(e)]
        ax.plot([r["tau"] for r in c], [r["pass@1_strict"]["mean"] for r in c], "o-", color=colour, ms=3)

    rows = [c[0] for c in sweeps.values()]  # one per line, in the colour of its lowest tau's variant
    return _lines_by_split(palette, rows, ("tau (gate threshold)", "Pass@1 (strict)"), line, palette.sweep)[0]


FIGURES = {
    "accuracy_by_method.png": ("Accuracy by method (strict, 95% bootstrap CI; circles: flexible)", accuracy_by_method),
    "accuracy_by_ops.png": ("Accuracy by number of operations", accuracy_by_ops),
    "tokens_vs_accuracy.png": ("Tokens per answer against accuracy", tokens_vs_accuracy),
    "signal_distribution.png": ("Signal distribution", signal_distribution),
    "transitions.png": ("Signal transitions (row-normalised)", transition_heatmaps),
    "tau_sweep.png": ("Gate threshold sweep", tau_sweep),
}
"""File name -> (the page's title, the figure)."""


def figure(name: str, entries: list[Entry]):
    """The figure ``name`` of FIGURES in matplotlib's default style, so that a user's matplotlibrc does
    not change the report; None when the entries hold nothing for it."""
    plt = _pyplot()
    with plt.style.context("default"):
        return FIGURES[name][1](entries)


def write(name: str, entries: list[Entry], out: Path) -> str | None:
    """Draw the figure ``name`` into ``out`` at DPI; returns the file name, or None when nothing was drawn."""
    fig = figure(name, entries)
    if fig is None:
        return None
    plt = _pyplot()
    with plt.style.context("default"):
        fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return name


PLOTS = {title: (lambda entries, out, name=name: write(name, entries, out)) for name, (title, _) in FIGURES.items()}
"""The page's title -> a writer ``(entries, out) -> file name or None``, as :mod:`rscaffold.report` calls it."""

"""The signal-mechanism grid: the experiment once per testbed setting, and one table and figure over them.

``rscaffold grid --config grid`` runs the whole pipeline (testbed to report) in ``<grid>/<setting>`` for
every setting of ``grid.settings``, the same config but for the scripted teacher's setting, then writes
``<grid>/grid.json``, ``grid.md`` (the table) and ``grid.png`` (the figure). A finished setting is kept,
an interrupted one resumes as ``rscaffold run`` does.

The table's rows are the students of ``grid.positions`` (one per place the signal enters) decoded with
each of ``grid.sources``, and the baselines; a cell is Pass@1 pooled over the test splits and seeds with
its bootstrap interval. Beside it, per setting: signal adherence of each position under golden signals,
the differences fixed in advance (paired over seeds, splits and questions) and how predictable the next
signal is there (the reference predictor of :mod:`rscaffold.testbed.reference` on the setting's own
training traces).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.config import Config, ExperimentConfig
from rscaffold.metrics import bootstrap_ci
from rscaffold.report.headline import paired_difference, pct, row_marks
from rscaffold.schema import atomic_writer

Marks = dict[tuple[int, str, str], bool]


def setting_config(cfg: Config, setting: str) -> Config:
    """``cfg`` with the scripted teacher in ``setting``."""
    scripted = cfg.generate.scripted.model_copy(update={"setting": setting})
    return cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"scripted": scripted})})


def run(cfg: Config, grid_dir: Path) -> dict[str, Any]:
    """Every setting's run (``grid.processes`` at once), then the grid's files; returns the grid."""
    from rscaffold.pipeline import run_pipeline

    seconds: dict[str, float] = {}
    if cfg.grid.processes > 1 and len(cfg.grid.settings) > 1:
        seconds = _in_processes(cfg, grid_dir)
    else:
        for setting in cfg.grid.settings:
            started = time.perf_counter()
            runs.say(f"grid: setting {setting} -> {grid_dir / setting}")
            run_pipeline(setting_config(cfg, setting), grid_dir / setting)
            seconds[setting] = round(time.perf_counter() - started, 1)
    return write(cfg, grid_dir, seconds)


def _in_processes(cfg: Config, grid_dir: Path) -> dict[str, float]:
    """``rscaffold run`` for each setting, ``grid.processes`` at a time, each with its resolved config
    (``<grid>/<setting>.yaml``) and its log (``<grid>/<setting>.log``); a failed one is an error naming
    its log, once the others have finished. On an interrupt the children are stopped too."""
    import subprocess

    from rscaffold.config import dump_config

    grid_dir.mkdir(parents=True, exist_ok=True)
    waiting, running, seconds, failed = list(cfg.grid.settings), {}, {}, []
    try:
        while waiting or running:
            while waiting and len(running) < cfg.grid.processes:
                setting = waiting.pop(0)
                config = grid_dir / f"{setting}.yaml"
                with atomic_writer(config) as f:
                    f.write(dump_config(setting_config(cfg, setting)))
                log = (grid_dir / f"{setting}.log").open("a", encoding="utf-8")
                command = [sys.executable, "-m", "rscaffold.cli", "run", "--config", str(config),
                           "--run-dir", str(grid_dir / setting)]  # fmt: skip
                runs.say(f"grid: setting {setting} -> {grid_dir / setting} (log {log.name})")
                child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                running[setting] = (child, log, time.perf_counter())
            time.sleep(1.0)
            for setting, (child, log, started) in list(running.items()):
                if child.poll() is not None:
                    log.close()
                    del running[setting]
                    seconds[setting] = round(time.perf_counter() - started, 1)
                    runs.say(f"grid: setting {setting} finished ({child.returncode}) in {seconds[setting]:.0f}s")
                    if child.returncode:
                        failed.append(f"{setting} (exit {child.returncode}; see {log.name})")
    finally:
        for child, log, _ in running.values():
            child.terminate()
            child.wait()
            log.close()
    if failed:
        write(cfg, grid_dir, seconds)  # what finished is in the tables
        raise GridFailed("grid: settings failed: " + ", ".join(failed))
    return seconds


class GridFailed(RuntimeError):
    """A setting's run failed (its log says why); ``rscaffold grid`` exits 1."""


def marks(run: Path, row: str, exp: ExperimentConfig) -> Marks:
    """(seed, split, question id) -> correct for the row ``<student>__<variant>`` over every split and seed."""
    return {  # seed, then split: the order the bootstrap resamples in (the published intervals)
        (seed, split, qid): right
        for seed in exp.seeds
        for split in exp.splits
        for (_, qid), right in row_marks(run, row, split, [seed]).items()
    }


def adherence(run: Path, student: str) -> float | None:
    """Signal adherence of ``student`` under golden signals, pooled over its evaluated files (steps weighted)."""
    path = run / "results.json"
    if not path.exists():
        return None
    entries = json.loads(path.read_text())["entries"]
    kept = steps = 0.0
    for e in entries:
        a = (e.get("signals") or {}).get("adherence")
        if e.get("variant") == "golden" and e.get("student") == student and a and a["steps"]:
            kept, steps = kept + a["share"] * a["steps"], steps + a["steps"]
    return kept / steps if steps else None


def predictability(cfg: Config, run: Path, limit: int) -> dict[str, Any] | None:
    """The reference predictor's next-signal accuracy over the first ``limit`` training traces of the run
    (every step, the answer step included), against the teacher's true signals."""
    import numpy as np

    from rscaffold.schema import Question, Trace, read_jsonl
    from rscaffold.testbed.reference import ReferencePredictor

    if not limit or not runs.traces(run).exists():
        return None
    texts = {q.id: q.text for q in read_jsonl(runs.questions(run, "train"), Question)}
    predictor = ReferencePredictor(cfg.generate.scripted)
    right = total = 0
    for i, trace in enumerate(read_jsonl(runs.traces(run), Trace)):
        if i >= limit:
            break
        steps = [(s.true_signal, s.text) for s in trace.steps]
        if not steps or any(sig is None for sig, _ in steps):
            continue
        guesses = predictor.distributions(texts[trace.question_id], steps[:-1])
        right += sum(int(np.argmax(g)) == int(sig) for g, (sig, _) in zip(guesses, steps, strict=True))
        total += len(steps)
    return {"accuracy": right / total if total else None, "steps": total, "traces": min(limit, i + 1)}


def differences(cfg: Config) -> list[tuple[str, str, str]]:
    """The comparisons fixed in advance, per setting: (name, row a, row b)."""
    g = cfg.grid
    out = []
    for p in g.positions:
        out.append((f"{p}: golden - predictor", f"{p}__golden", f"{p}__predictor-gate"))
        out.append((f"{p}: predictor - random", f"{p}__predictor-gate", f"{p}__random"))
        out += [(f"{p}: predictor - {b.split('__')[0]}", f"{p}__predictor-gate", b) for b in g.baselines]
    out += [(f"{p} - {g.positions[0]} (predictor)", f"{p}__predictor-gate", f"{g.positions[0]}__predictor-gate")
            for p in g.positions[1:]]  # fmt: skip
    return out


def rows(cfg: Config) -> list[str]:
    return [f"{p}__{s}" for p in cfg.grid.positions for s in cfg.grid.sources] + list(cfg.grid.baselines)


def collect(cfg: Config, grid_dir: Path, seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """The grid as a dict: per setting, every row pooled, adherence, the differences, predictability."""
    exp = cfg.experiment
    out: dict[str, Any] = {"seeds": exp.seeds, "splits": exp.splits, "settings": {}}
    for setting in cfg.grid.settings:
        run = grid_dir / setting
        scored = {row: marks(run, row, exp) for row in rows(cfg)}
        samples, level = cfg.evaluate.bootstrap_samples, cfg.evaluate.ci_level
        pooled = {
            r: bootstrap_ci([float(v) for v in m.values()], samples, level, cfg.evaluate.seed)
            for r, m in scored.items()
        }
        entry: dict[str, Any] = {
            "rows": pooled,
            "adherence": {p: adherence(run, p) for p in cfg.grid.positions},
            "differences": [
                {"name": name, "a": a, "b": b, **paired_difference(scored[a], scored[b], samples, cfg.evaluate.seed)}
                for name, a, b in differences(cfg)
            ],
            "predictability": predictability(setting_config(cfg, setting), run, cfg.grid.predictability_traces),
        }
        if seconds and setting in seconds:
            entry["seconds"] = seconds[setting]
        out["settings"][setting] = entry
    return out


def table(grid: dict[str, Any]) -> str:
    """The grid as a Markdown table: one row per student and source, one column per setting."""
    settings = list(grid["settings"])
    names = list(next(iter(grid["settings"].values()))["rows"]) if settings else []
    lines = ["| row | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for name in names:
        cells = [pct(grid["settings"][s]["rows"][name]) for s in settings]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    adherence = [grid["settings"][s]["adherence"] for s in settings]
    for p in adherence[0] if adherence else []:
        cells = ["–" if a[p] is None else f"{a[p]:.3f}" for a in adherence]
        lines.append(f"| adherence ({p}, golden) | " + " | ".join(cells) + " |")
    pred = [grid["settings"][s]["predictability"] for s in settings]
    cells = ["–" if not p or p["accuracy"] is None else f"{p['accuracy']:.3f}" for p in pred]
    lines.append("| next signal predictable (reference) | " + " | ".join(cells) + " |")
    diffs = ["", "| difference (paired) | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for i, d in enumerate(next(iter(grid["settings"].values()))["differences"] if settings else []):
        cells = [pct(grid["settings"][s]["differences"][i]) for s in settings]
        diffs.append(f"| {d['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + diffs) + "\n"


def figure(grid: dict[str, Any], cfg: Config) -> Any:
    """One panel per setting: Pass@1 of each position under each source (bars, 95% intervals), the
    baselines as horizontal bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(grid["settings"])
    fig, axes = plt.subplots(1, len(settings), figsize=(3.6 * len(settings), 3.4), sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / max(1, len(cfg.grid.sources))
    for ax, setting in zip(axes[0], settings, strict=True):
        rows_ = grid["settings"][setting]["rows"]
        for j, source in enumerate(cfg.grid.sources):
            xs = [i + (j - (len(cfg.grid.sources) - 1) / 2) * width for i in range(len(cfg.grid.positions))]
            cis = [rows_[f"{p}__{source}"] for p in cfg.grid.positions]
            means = [c["mean"] or 0.0 for c in cis]
            err = [[m - (c["lo"] or m) for m, c in zip(means, cis, strict=True)],
                   [(c["hi"] or m) - m for m, c in zip(means, cis, strict=True)]]  # fmt: skip
            ax.bar(xs, means, width, yerr=err, color=colours[j], label=source, capsize=2)
        for k, b in enumerate(cfg.grid.baselines):
            c = rows_[b]
            if c["mean"] is not None:
                colour = colours[len(cfg.grid.sources) + k]
                ax.axhspan(c["lo"], c["hi"], color=colour, alpha=0.15)
                ax.axhline(c["mean"], color=colour, linestyle="--", linewidth=1, label=b.split("__")[0])
        ax.set_xticks(range(len(cfg.grid.positions)), cfg.grid.positions)
        ax.set_title(setting)
        ax.set_xlabel("where the signal enters")
    axes[0][0].set_ylabel("Pass@1 (all test splits, seeds pooled)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def write(cfg: Config, grid_dir: Path, seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """``grid.json``, ``grid.md`` and ``grid.png`` in ``grid_dir`` (each written whole, then renamed)."""
    grid = collect(cfg, grid_dir, seconds)
    grid_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("grid.json", json.dumps(grid, indent=2)), ("grid.md", table(grid))):
        with atomic_writer(grid_dir / name) as f:
            f.write(text)
    with atomic_writer(grid_dir / "grid.png", "wb") as f:
        figure(grid, cfg).savefig(f, format="png", dpi=110)
    return grid


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", help="grid folder (default run.dir of the config, else runs/grid)")
    p.add_argument("--tables-only", action="store_true", help="only write grid.json/md/png from the runs there")


def cmd_grid(args: argparse.Namespace, cfg: Config) -> int:
    """``rscaffold grid``: every setting's run, then the grid's table and figure."""
    grid_dir = Path(args.run_dir or cfg.run.dir or "runs/grid")
    started = time.perf_counter()
    try:
        grid = write(cfg, grid_dir) if args.tables_only else run(cfg, grid_dir)
    except GridFailed as e:
        print(e, file=sys.stderr)
        return 1
    print(table(grid), end="")
    print(f"grid folder: {grid_dir} ({time.perf_counter() - started:.0f}s): grid.md, grid.json, grid.png")
    return 0

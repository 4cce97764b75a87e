"""The pipeline: every stage in order, once. ``rscaffold run`` runs the stages of ``run.stages`` in one
run folder; ``rscaffold demo`` is that run with the demo config (``rscaffold/config/demo.yaml``).

Each stage is a module with one entry, ``run(cfg, run_dir) -> summary``, that reads the previous
stage's artifact in the run folder and writes its own (the paths: :mod:`rscaffold.runs`). A stage whose
artifact is already there is kept, so an interrupted run resumes where it stopped; train and decode
keep each finished student and decoded file; evaluate and report always run (they take seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rscaffold import build, evaluate, generate, import_traces, label, parallel, report, runs, segment, stats
from rscaffold.config import Config
from rscaffold.testbed import problems


def _train(cfg: Config, run_dir: Path) -> dict[str, Any]:
    from rscaffold import train  # PyTorch loads only when a stage needs it

    return train.run(cfg, run_dir)


def _decode(cfg: Config, run_dir: Path) -> dict[str, Any]:
    from rscaffold import decode

    return decode.run(cfg, run_dir)


RUNNERS: dict[str, Callable[[Config, Path], dict[str, Any]]] = {
    "testbed": problems.run,
    "generate": generate.run,
    "import": import_traces.run,
    "segment": segment.run,
    "label": label.run,
    "stats": stats.run,
    "build": build.run,
    "train": _train,
    "decode": _decode,
    "evaluate": evaluate.run,
    "report": report.run,
}

ARTIFACTS: dict[str, Callable[[Path], Path]] = {
    "testbed": runs.testbed_dir,
    "generate": runs.traces,
    "import": runs.traces,
    "segment": runs.segmented,
    "label": runs.labelled,
    "stats": runs.stats,
    "build": lambda run_dir: runs.build_dir(run_dir) / "stats.json",
}
"""The artifact that marks a stage done (a stage not listed here checks its own work item by item)."""

BRIEF = ("traces", "kept", "dropped_wrong", "failed", "ledger", "splits", "label_coverage", "lexicon_version")
BRIEF += ("trained", "decoded", "seconds")


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The few keys of a stage's summary worth a line on the terminal and in the manifest."""
    return {k: summary[k] for k in BRIEF if k in summary}


SPREAD = ("train", "decode")
"""The stages every process started by a launcher (``accelerate launch``) takes part in: training
shards batches, decoding shards questions. The others run on the first process while the rest wait."""


def run_stage(stage: str, cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Run one stage in a run folder and record it in the manifest (on the first process)."""
    started = time.perf_counter()
    if stage in SPREAD:
        summary = RUNNERS[stage](cfg, run_dir)
    else:
        summary = parallel.on_first(lambda: RUNNERS[stage](cfg, run_dir), {})
    if not parallel.world().main:
        return summary
    runs.record_stage(run_dir, cfg, stage, {**brief(summary), "seconds": round(time.perf_counter() - started, 2)})
    return summary


def run_pipeline(cfg: Config, run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every stage of ``run.stages`` in ``run_dir``, in order; returns each stage's summary."""
    out: dict[str, dict[str, Any]] = {}
    for stage in cfg.run.stages:
        artifact = ARTIFACTS.get(stage, lambda _: None)(run_dir)
        if artifact is not None and artifact.exists():
            runs.say(f"{stage}: kept {artifact}")
            continue
        t0 = time.perf_counter()
        out[stage] = run_stage(stage, cfg, run_dir)
        runs.say(f"{stage}: {time.perf_counter() - t0:.1f}s {brief(out[stage])}")
    return out

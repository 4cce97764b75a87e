"""Run folders: where each stage finds the previous stage's artifact and leaves its own.

Every stage that writes into a run folder also leaves there the resolved config (``config.yaml``)
and a manifest (``manifest.json``: package versions, git SHA, and one entry per stage run).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rscaffold.config import Config, dump_config
from rscaffold.schema import InputError, atomic_writer

ARTIFACTS = {
    "testbed": (None, "testbed"),
    "generate": ("testbed/{split}.jsonl", "traces.jsonl"),
    "import": (None, "traces.jsonl"),
    "segment": ("traces.jsonl", "segmented.jsonl"),
    "label": ("segmented.jsonl", "labelled.jsonl"),
    "stats": ("labelled.jsonl", "stats.json"),
}
"""stage -> (what it reads in the run folder, what it writes there)."""

PACKAGES = ("reasoning-scaffold", "pydantic", "pyyaml", "pyarrow", "torch", "transformers", "peft", "accelerate")


def stage_paths(run_dir: Path, stage: str, cfg: Config) -> tuple[Path | None, Path]:
    """The input and output of ``stage`` inside ``run_dir``; the input must exist."""
    source, target = ARTIFACTS[stage]
    inp = run_dir / source.format(split=cfg.generate.split) if source else None
    if inp is not None and not inp.exists():
        before = [s for s, (_, out) in ARTIFACTS.items() if source.startswith(out)]
        hint = f"; run `rscaffold {before[0]} --run-dir {run_dir}` first" if before else ""
        raise InputError(f"{inp}: not found{hint}")
    return inp, run_dir / target


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    """The commit of the source tree the package runs from (``-dirty`` when it has changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def record_stage(run_dir: Path, cfg: Config, stage: str, summary: dict[str, Any]) -> None:
    """Write the resolved config and add this stage to the run folder's manifest."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_writer(run_dir / "config.yaml") as f:
        f.write(dump_config(cfg))
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"stages": []}
    manifest.update(versions=versions(), git_sha=git_sha(), command=sys.argv)
    manifest["stages"].append({"stage": stage, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **summary})
    with atomic_writer(path) as f:
        json.dump(manifest, f, indent=2)

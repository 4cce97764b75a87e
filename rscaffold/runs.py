"""The run folder: where every artifact of a run lives, the manifest, and progress lines.

Every path inside a run folder is made here and nowhere else::

    RUN/config.yaml, manifest.json        the resolved config; versions, git SHA, one entry per stage run
    RUN/testbed/<split>.jsonl             questions (testbed)
    RUN/traces.jsonl                      the teacher's traces (generate or import)
    RUN/segmented.jsonl, labelled.jsonl   steps; steps with signals (segment, label)
    RUN/stats.json                        signal statistics (stats)
    RUN/build/                            training sets (build)
    RUN/golden/<split>.jsonl              labelled teacher traces of a test split (golden signals; decode)
    RUN/students/<name>-s<seed>/          a trained student (train)
    RUN/decoded/<student>-s<seed>__<variant>__<split>.jsonl    decoded questions (decode)
    RUN/scored/<same name>.jsonl, results.json                 scores (evaluate)
    RUN/headline.json, report/index.html                       the comparisons and the page (report)
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from rscaffold.config import Config, dump_config
from rscaffold.schema import InputError, atomic_writer

T = TypeVar("T")
PACKAGES = ("reasoning-scaffold", "pydantic", "pyyaml", "pyarrow", "torch", "transformers", "peft", "accelerate")


def questions(run: Path, split: str) -> Path:
    return run / "testbed" / f"{split}.jsonl"


def benchmark_questions(run: Path, label: str) -> Path:
    """The questions of ``run.benchmark`` (its first ``limit``), written once by the decode stage."""
    return run / "benchmarks" / f"{label}.jsonl"


def testbed_dir(run: Path) -> Path:
    return run / "testbed"


def traces(run: Path) -> Path:
    return run / "traces.jsonl"


def segmented(run: Path) -> Path:
    return run / "segmented.jsonl"


def labelled(run: Path) -> Path:
    return run / "labelled.jsonl"


def stats(run: Path) -> Path:
    return run / "stats.json"


def build_dir(run: Path) -> Path:
    return run / "build"


def golden(run: Path, split: str) -> Path:
    return run / "golden" / f"{split}.jsonl"


def student_dir(run: Path, name: str, seed: int) -> Path:
    return run / "students" / f"{name}-s{seed}"


def subset(run: Path, split: str, limit: int) -> Path:
    """The first ``limit`` questions of a split, written once and decoded by every variant that asks."""
    return run / "decoded" / "subsets" / f"{split}-{limit}.jsonl"


def decoded_dir(run: Path) -> Path:
    return run / "decoded"


def results(run: Path) -> Path:
    return run / "results.json"


def headline(run: Path) -> Path:
    return run / "headline.json"


def logs_dir(run: Path) -> Path:
    """The trackers' logs (TensorBoard): ``train-<student>-s<seed>/`` and ``evaluate/``."""
    return run / "logs"


def report_dir(run: Path) -> Path:
    return run / "report"


_NAME = re.compile(r"^(?P<student>.+)-s(?P<seed>-?\d+)__(?P<variant>[^_].*?)__(?P<split>[^_].*)$")


@dataclass(frozen=True)
class Decoding:
    """One decoded file's identity: which student (and training seed), which variant, which split."""

    student: str
    seed: int
    variant: str
    split: str

    @property
    def row(self) -> str:
        """The row of the headline: ``<student>__<variant>`` (pooled over seeds)."""
        return f"{self.student}__{self.variant}"

    @property
    def stem(self) -> str:
        return f"{self.student}-s{self.seed}__{self.variant}__{self.split}"

    @classmethod
    def parse(cls, stem: str) -> Decoding | None:
        """The identity behind a file name, or None for a file the pipeline did not name."""
        m = _NAME.match(stem)
        return cls(m["student"], int(m["seed"]), m["variant"], m["split"]) if m else None


def decoded(run: Path, d: Decoding) -> Path:
    return run / "decoded" / f"{d.stem}.jsonl"


def scored(run: Path, d: Decoding | str) -> Path:
    """The scored records of a decoded file (by identity, or by the decoded file's name)."""
    return run / "scored" / (f"{d.stem}.jsonl" if isinstance(d, Decoding) else d)


def decoded_files(run: Path) -> list[Path]:
    return sorted((run / "decoded").glob("*.jsonl"))


# -- the manifest ---------------------------------------------------------------------------------


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


_USERINFO = re.compile(r"://[^/?#@\s]*@")
_SECRET_OPTION = re.compile(r"^(--)?[\w.-]*(key|token|secret|password)=", re.IGNORECASE)


def command() -> list[str]:
    """The command line as the manifest records it: credentials in a URL and the values of ``*key=``,
    ``*token=``, ``*secret=``, ``*password=`` arguments masked (the config refuses them; this is the
    second line of defence for what it cannot see)."""
    out = []
    for arg in sys.argv:
        arg = _USERINFO.sub("://***@", arg)
        m = _SECRET_OPTION.match(arg)
        out.append(m.group(0) + "***" if m else arg)
    return out


def record_stage(run_dir: Path, cfg: Config, stage: str, summary: dict[str, Any]) -> None:
    """Write the resolved config and add this stage to the run folder's manifest."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_writer(run_dir / "config.yaml") as f:
        f.write(dump_config(cfg))
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"stages": []}
    manifest.update(versions=versions(), git_sha=git_sha(), command=command())
    manifest["stages"].append({"stage": stage, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **summary})
    with atomic_writer(path) as f:
        json.dump(manifest, f, indent=2)


def require(path: Path, stage: str, run: Path) -> Path:
    """``path`` if it exists, else an error that names the command that makes it."""
    if not path.exists():
        raise InputError(f"{path}: not found; run `rscaffold {stage} --run-dir {run}` first")
    return path


# -- progress -------------------------------------------------------------------------------------


def say(message: str) -> None:
    """A time-stamped progress line on stderr (a terminal or a log file alike)."""
    print(f"[rscaffold {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


PROGRESS_SECONDS = 30.0
"""Off a terminal, a progress line at most this often (``RSCAFFOLD_PROGRESS_SECONDS`` overrides)."""


class Progress:
    """How far a long stage is: a bar on an interactive terminal; elsewhere (nohup, CI, ``| tee``) a
    time-stamped line on stderr at most every ``PROGRESS_SECONDS`` (and a last one), with the count,
    the share done and the time left when the total is known, the rate, and any extra counters."""

    def __init__(self, desc: str, total: int | None = None, stream: Any = None, clock: Any = time.monotonic):
        self.desc, self.total, self.clock = desc, total, clock
        self.stream = stream if stream is not None else sys.stderr
        self.done, self.shown, self.extra = 0, 0, {}
        self.started = self.last = clock()
        self.every = float(os.environ.get("RSCAFFOLD_PROGRESS_SECONDS", PROGRESS_SECONDS))
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, total=total, unit=" rec", leave=False, file=self.stream)

    def update(self, n: int = 1, **extra: Any) -> None:
        self.done += n
        self.extra.update(extra)
        if self.bar is not None:
            self.bar.update(n)
            if extra:
                self.bar.set_postfix(self.extra, refresh=False)
        elif self.clock() - self.last >= self.every:
            self.last = self.clock()
            self._line()

    def close(self, finished: bool = True) -> None:
        """The last line, when lines were printed and the work went on since (not after an error: the
        error is then the last line)."""
        if self.bar is not None:
            self.bar.close()
        elif finished and self.shown and self.done > self.shown:
            self._line()

    def _line(self) -> None:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.done}/{self.total} ({self.done / self.total:.0%})" if self.total else str(self.done)]
        parts.append(f"{rate:.2f}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"about {_duration((self.total - self.done) / rate)} left")
        parts += [f"{k} {v}" for k, v in self.extra.items()]
        self.shown = self.done
        stamp = time.strftime("%H:%M:%S")
        print(f"[rscaffold {stamp}] {self.desc}: {', '.join(parts)}", file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 5400 else f"{seconds / 3600:.1f}h"


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """``items``, counted by a :class:`Progress` as they are consumed; the total is ``len(items)`` when
    not given and ``items`` has a length."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    bar = Progress(desc, total)
    for item in items:
        yield item
        bar.update()
    bar.close()

"""Score one model on one benchmark in one command (``rscaffold evaluate --student S --benchmark NAME``):
decode the benchmark's questions with a trained student or an untrained base model (the paper's
Original row), score the answers with the benchmark's extraction, and write, in one folder,

    decoded.jsonl   what the model wrote (an interrupted decode resumes from its part files)
    scored.jsonl    each answer scored, strict and flexible
    results.json    Pass@1 with its bootstrap interval, the settings and the student

A folder that already holds the decoded answers of the same student and settings is scored again
without decoding; other settings are an error (choose another folder)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from rscaffold import evaluate
from rscaffold.benchmarks import SPECS, load_questions
from rscaffold.config import Config
from rscaffold.schema import InputError, atomic_writer


def settings(cfg: Config, student: Path, benchmark: str, split: str | None, limit: int | None) -> dict[str, Any]:
    """What the decoded answers depend on: the folder's decoded.jsonl is reused only when these match."""
    return {
        "student": str(student),
        "benchmark": benchmark,
        "split": split or SPECS[benchmark].default_split,
        "limit": limit,
        "decode": cfg.decode.model_dump(mode="json"),
        "prompt_template": cfg.build.prompt_template,
    }


def run(
    cfg: Config,
    student: Path,
    benchmark: str,
    out_dir: Path,
    split: str | None = None,
    limit: int | None = None,
    path: Path | None = None,
    extras: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode (unless already decoded with the same settings), score, and write ``results.json``."""
    from rscaffold.decode import decode_file  # PyTorch loads only here

    if benchmark not in SPECS or benchmark == "testbed":
        known = ", ".join(sorted(n for n in SPECS if n != "testbed"))
        raise InputError(f"--benchmark: unknown benchmark {benchmark!r}; known: {known}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    out_dir.mkdir(parents=True, exist_ok=True)
    decoded, key_file = out_dir / "decoded.jsonl", out_dir / "settings.json"
    wanted = settings(cfg, student, benchmark, split, limit)
    if decoded.exists():
        if not key_file.exists() or json.loads(key_file.read_text()) != wanted:
            raise InputError(f"{decoded}: decoded with other settings or another student; choose another --output")
    else:
        questions = itertools.islice(load_questions(benchmark, split, path), limit)
        template = {"prompt_template": cfg.build.prompt_template}
        decode_file(cfg.decode, student, questions, decoded, {**(extras or {}), **template})
        with atomic_writer(key_file) as f:
            json.dump(wanted, f, indent=2)
    summary, scored = evaluate.score_predictions(decoded, benchmark, cfg.evaluate)
    evaluate.write_scored(out_dir / "scored.jsonl", scored)
    results = {**wanted, **summary}
    with atomic_writer(out_dir / "results.json") as f:
        json.dump(results, f, indent=2)
    return results

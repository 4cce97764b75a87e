"""Decoding spread over processes, and decoding that resumes: the writer behind ``rscaffold decode``.

Under ``accelerate launch`` (or ``torchrun``), every process decodes every ``world``-th question
(question ``i`` goes to process ``i % world``) on its own device and appends its outputs to a part file
beside the output, ``.<name>.part-<rank>-of-<world>-<key>.jsonl``, flushed record by record; the first
process then merges the parts in the input order into the output (written atomically, as every
output) and removes them. One process is the case ``world = 1``.

A run that is interrupted and started again with the same student, questions, settings and number of
processes resumes: ``key`` hashes them, and each process skips the questions its part already holds
(a line cut short by the interruption is dropped and decoded again). Greedy outputs do not depend on
which rows share a batch, so the merged file equals a single-process run record for record.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rscaffold.schema import Decoded, InputError, Question, atomic_writer, prepare_output

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the processes a launcher started."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """From the launcher's environment (``RANK``/``WORLD_SIZE``, set by accelerate launch and torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return World(int(os.environ.get("RANK", "0") or 0), size) if size > 1 else World()


class Group:
    """The processes' meeting points (``accelerate``'s state: gloo on CPU, NCCL on GPUs); nothing for one."""

    def __init__(self, w: World):
        self.state = None
        if w.size > 1:
            import torch
            from accelerate import PartialState

            self.state = PartialState(cpu=not torch.cuda.is_available())  # gloo between CPU processes
            if self.state.num_processes != w.size:
                raise InputError(
                    f"decode: the launcher started {w.size} processes but they could not meet "
                    f"(accelerate sees {self.state.num_processes}); launch with `accelerate launch` or torchrun"
                )

    @property
    def device(self) -> str | None:
        return str(self.state.device) if self.state is not None else None

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def on_first(work: Callable[[], T], elsewhere: T) -> T:
    """``work()`` on the first process while the others wait for it (and get ``elsewhere``): the stages
    that write shared files (and golden traces) under a launcher. With one process, just ``work()``."""
    w = world()
    if w.size == 1:
        return work()
    group = Group(w)
    try:
        return work() if w.main else elsewhere
    finally:
        group.wait()


def part_key(student: Path, questions: list[Question], settings: dict[str, Any], w: World) -> str:
    """What a part file belongs to: a resumed run continues only the same decoding."""
    h = hashlib.sha256()
    what = {"student": str(Path(student).resolve()), "world": w.size, **settings}
    h.update(json.dumps(what, sort_keys=True).encode())
    for q in questions:
        h.update(q.model_dump_json().encode())
    return h.hexdigest()[:16]


def part_path(output: Path, key: str, rank: int, size: int) -> Path:
    return output.with_name(f".{output.name}.part-{rank}-of-{size}-{key}.jsonl")


def _done(part: Path) -> int:
    """Complete records in a part; a last line cut short is cut off the file."""
    if not part.exists():
        return 0
    data = part.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with part.open("r+b") as f:
            f.truncate(end)
    return data[:end].count(b"\n")


def decode_sharded(
    questions: list[Question],
    output: Path,
    key: str,
    decode: Callable[[Iterable[Question]], Iterator[Decoded]],
    group: Group,
    w: World,
) -> int:
    """Decode this process's share of ``questions`` into its part (resuming it), then, on the first
    process, merge every part into ``output``. Returns how many records the output holds (0 elsewhere)."""
    prepare_output(output)
    mine = questions[w.rank :: w.size]
    part = part_path(output, key, w.rank, w.size)
    skip = _done(part)
    if skip > len(mine):
        raise InputError(f"{part}: holds {skip} records, more than this process's {len(mine)} questions")
    with part.open("a", encoding="utf-8") as f:
        for d in decode(mine[skip:]):
            f.write(d.model_dump_json(exclude_defaults=True) + "\n")
            f.flush()
    group.wait()
    if not w.main:
        group.wait()
        return 0
    parts = [part_path(output, key, r, w.size).read_text(encoding="utf-8").splitlines() for r in range(w.size)]
    with atomic_writer(output) as f:
        for i in range(len(questions)):
            f.write(parts[i % w.size][i // w.size] + "\n")
    for stale in output.parent.glob(f".{output.name}.part-*.jsonl"):
        stale.unlink()
    group.wait()
    return len(questions)

"""``rscaffold probe``: how well a base model (or student) reads a given value out of a question, per
look-up format (METHOD.md section 8: a base that reads values only in one recipe's format favours
that recipe).

For each question, two given facts M and N at random and, for every format of
:data:`rscaffold.build.LOOKUP_FORMATS`, the question text, one look-up of M, and the look-up of N up
to its value: ``M = 5`` then ``N =``; ``M has 5`` then ``N has``; ``Here M has 5`` then ``Here N has``;
``Here M has 5 and N has`` (the two-fact format holds M's look-up in its own line). The model continues
greedily and is right when the number it writes is N's value. Every format thus gets the same context
(one look-up of another fact, written right), so the probe compares formats, not amounts of context;
the layout is the base corpus's own (a question, then look-up lines), so it measures the base, not a
prompt.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Any

from rscaffold.build import LOOKUP_FORMATS
from rscaffold.schema import InputError, Question, read_jsonl

NUMBER = re.compile(r"\s*(-?\d+)")


def probe_prompts(questions: list[Question], seed: int = 0) -> list[tuple[str, str, str]]:
    """(format, prompt, expected value) for every question and format; the fact is drawn per question."""
    rng = random.Random(f"rscaffold-probe:{seed}")
    out = []
    for q in questions:
        given = [(d["name"], d["value"]) for d in q.metadata.get("quantities", []) if d["op"] == "given"]
        if len(given) < 2:
            continue
        (n, v), (m, w) = rng.sample(given, 2)
        for name, template in LOOKUP_FORMATS.items():
            ask = template.format(n=n, v="\0", m=m, w=w).split("\0")[0].rstrip()
            if "{m}" not in template:  # the earlier look-up of M, in the same format
                ask = template.format(n=m, v=w) + "\n" + ask
            out.append((name, f"{q.text}\n{ask}", str(v)))
    return out


def lookup_probe(student: str | Path, questions: list[Question], seed: int = 0, batch: int = 64) -> dict[str, Any]:
    """Accuracy of ``student`` (a student folder, or a base name such as ``testbed``) per look-up format."""
    import torch

    from rscaffold.model import student_from_folder

    s = student_from_folder(student, "cpu")
    prompts = probe_prompts(questions, seed)
    if not prompts:
        raise InputError("probe: no question with two or more given facts (testbed questions are needed)")
    right: dict[str, list[bool]] = {name: [] for name in LOOKUP_FORMATS}
    tok = s.tokenizer
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        ids = [s.encode(p) for _, p, _ in chunk]
        width = max(map(len, ids))
        pad = tok.pad_token_id or 0
        x = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
        with torch.no_grad():
            out = s.lm.generate(x, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=pad)
        for (name, _, value), row in zip(chunk, out[:, width:], strict=True):
            got = NUMBER.match(tok.decode(row, skip_special_tokens=True))
            right[name].append(bool(got) and got.group(1) == value)
    acc = {name: sum(r) / len(r) for name, r in right.items() if r}
    best = max(acc.values())
    return {
        "student": str(student),
        "questions": len(prompts) // len(LOOKUP_FORMATS),
        "accuracy": acc,
        "gap_to_best": {name: round(best - a, 3) for name, a in acc.items()},
    }


def format_probe(result: dict[str, Any]) -> str:
    lines = [f"look-up probe of {result['student']} ({result['questions']} questions, greedy)"]
    lines += [f"  {name:<12} {a:.3f}" for name, a in result["accuracy"].items()]
    return "\n".join(lines)


def add_probe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--student", default="testbed", help="student folder or base name (default: the shipped testbed base)"
    )
    p.add_argument("--questions", type=Path, required=True, help="testbed questions JSONL (e.g. testbed/test_id.jsonl)")
    p.add_argument("--limit", type=int, default=200, help="questions probed (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fact drawn per question")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_probe(args: argparse.Namespace) -> int:
    if not args.questions.exists():
        raise InputError(f"{args.questions}: not found")
    questions = [q for _, q in zip(range(args.limit), read_jsonl(args.questions, Question), strict=False)]
    result = lookup_probe(args.student, questions, args.seed)
    print(json.dumps(result) if args.json else format_probe(result))
    return 0

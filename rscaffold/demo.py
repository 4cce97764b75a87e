"""The whole experiment in one command: ``rscaffold demo`` (and ``rscaffold demo --config experiment``).

In one run folder, in order, each step skipped when its output is already there (so an interrupted
run resumes where it stopped):

1. the data stages of ``run.stages``: testbed, traces from the teacher (the scripted one by default,
   through the same ``generate`` path and teacher interface as an API teacher), segment, label, stats;
2. ``build``: the training sets;
3. golden traces of the test splits (the teacher's traces of the test questions, labelled the same
   way, not filtered by correctness) for the golden-signal ablation;
4. every student of ``demo.students`` for each of its seeds, with the ``train`` settings (the demo: the
   same epochs over the same problems for every recipe) unless it overrides them, or as many tokens as
   another student saw (``tokens_of``): ``students/<name>-s<seed>/``;
5. every decoding variant of ``demo.variants`` on its splits: ``decoded/<student>-s<seed>__<variant>__<split>.jsonl``;
6. ``evaluate`` (``results.json``), the headline (``headline.json``: per split, the most-common-answer
   rate, every variant pooled over seeds, and the comparisons fixed in advance (``demo.comparisons``
   and the signal-quality rows) as paired differences with bootstrap intervals; the base's look-up
   probe), and the HTML report (``report/index.html``).

The config is torch-free; the steps import what they need when they run.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rscaffold.schema import InputError

SPLITS = ("test_id", "test_surface", "test_perturbed", "test_ood")
SOURCES = ("predictor-head", "predictor-generative", "golden", "random", "none")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoStudent(_Section):
    """One student to train: a recipe and its own train.* / model.* deltas."""

    name: str = Field(description="Folder name under students/ (the seed is appended: <name>-s<seed>).")
    recipe: Literal["scaffold", "scaffold-pruned", "predictor", "cot-sft", "oracle-cot", "long-sft", "answer-sft"] = (
        Field(description="Recipe.")
    )
    train: dict[str, Any] = Field({}, description="train.* keys that differ for this student.")
    model: dict[str, Any] = Field({}, description="model.* keys that differ for this student.")
    init: str | None = Field(None, description="Predictor: the demo student it starts from (default: scaffold).")
    tokens_of: str | None = Field(
        None, description="Train on as many tokens as this demo student saw (equal token budgets); null: train.*."
    )
    seeds: list[int] | None = Field(None, description="Seeds to train this student for; null: all of demo.seeds.")


class DemoVariant(_Section):
    """One way of decoding one student."""

    name: str = Field(description="Variant name (in file names and tables).")
    student: str = Field(description="A demo student's name.")
    source: Literal[SOURCES] = Field("none", description="Signal source (decode.signal_source).")  # type: ignore[valid-type]
    tau: float | None = Field(None, ge=0, le=1, description="Gate threshold; null: decode.tau.")
    prune: bool = Field(False, description="Keep only conclusions in the context (summaries-only).")
    predictor: str | None = Field(None, description="predictor-generative: the demo student used as predictor.")
    splits: list[str] | None = Field(None, description="Splits to decode; null: all of demo.splits.")
    limit: int | None = Field(None, ge=1, description="Decode only the first N questions of each split.")
    decode: dict[str, Any] = Field({}, description="Other decode.* keys for this variant.")


class Comparison(_Section):
    """A difference fixed in advance: row ``a`` minus row ``b`` (rows are ``<student>__<variant>``),
    paired over seeds and questions, on every split where both were decoded."""

    name: str = Field(description="What the comparison tests (printed).")
    a: str = Field(description="The row compared.")
    b: str = Field(description="The row it is compared against.")


def _default_students() -> list[DemoStudent]:
    return [
        DemoStudent(name="scaffold", recipe="scaffold"),
        DemoStudent(name="cot-sft", recipe="cot-sft"),
        DemoStudent(name="long-sft", recipe="long-sft"),
        DemoStudent(name="oracle-cot", recipe="oracle-cot"),
    ]


def _default_variants() -> list[DemoVariant]:
    """The demo's decodes, sized for 15 minutes on 2 CPU cores (decoding dominates there): the rows of
    comparisons (a) and (b) on the first 300 questions of every split, the signal-quality rows (c) on
    the first 100 of test_id."""
    t, many, few = ["test_id"], 300, 100
    return [
        DemoVariant(name="predictor-gate", student="scaffold", source="predictor-head", limit=many),
        DemoVariant(name="golden", student="scaffold", source="golden", splits=t, limit=few),
        DemoVariant(name="random", student="scaffold", source="random", splits=t, limit=few),
        DemoVariant(name="none", student="scaffold", source="none", splits=t, limit=few),
        DemoVariant(name="summaries", student="scaffold", source="predictor-head", prune=True, splits=t, limit=few),
        DemoVariant(name="free", student="cot-sft", limit=many),
        DemoVariant(name="free", student="long-sft", limit=many),
        DemoVariant(name="free", student="oracle-cot", splits=t, limit=many),
    ]


SCAFFOLD = "scaffold__predictor-gate"


def _default_comparisons() -> list[Comparison]:
    return [
        Comparison(name="(a) mechanism: scaffold - long-thinking SFT, same traces", a=SCAFFOLD, b="long-sft__free"),
        Comparison(name="(b) paper's claim: scaffold - CoT SFT", a=SCAFFOLD, b="cot-sft__free"),
    ]


class DemoConfig(_Section):
    """What ``rscaffold demo`` trains, decodes and compares."""

    seeds: list[int] = Field([0], min_length=1, description="Training seeds; every student is trained per seed.")
    splits: list[str] = Field(list(SPLITS), description="Testbed splits decoded by variants without their own.")
    students: list[DemoStudent] = Field(default_factory=_default_students, description="Students to train.")
    variants: list[DemoVariant] = Field(default_factory=_default_variants, description="Decoding variants.")
    comparisons: list[Comparison] = Field(
        default_factory=_default_comparisons, description="Differences fixed in advance, reported whatever their sign."
    )
    signal_quality: list[str] = Field(
        [
            "scaffold__golden",
            "scaffold__random",
            "scaffold__none",
            "scaffold__summaries",
        ],
        description="(c) signal quality (the paper's Table 3): each row minus the scaffold's predictor + gate row.",
    )
    reference: str = Field(SCAFFOLD, description="The row the signal-quality rows are compared against.")
    probe: bool = Field(True, description="Print the base model's look-up probe per format (testbed bases).")


# -- steps -----------------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _data(cfg: Any, run: Path) -> None:
    from rscaffold.cli import run_stage
    from rscaffold.runs import ARTIFACTS

    for stage in cfg.run.stages:
        out = run / ARTIFACTS[stage][1]
        if out.exists():
            _say(f"{stage}: kept {out}")
            continue
        started = time.perf_counter()
        run_stage(stage, cfg, run)
        _say(f"{stage}: {time.perf_counter() - started:.1f}s -> {out}")


def _build(cfg: Any, run: Path) -> None:
    from rscaffold import build
    from rscaffold.base_models import base_tokenizer

    out = run / "build"
    if (out / "stats.json").exists():
        _say(f"build: kept {out}")
        return
    started = time.perf_counter()
    stats = build.run(run / "labelled.jsonl", out, cfg.build, cfg.testbed, cfg.run.seed, base_tokenizer(cfg.model))
    _say(f"build: {time.perf_counter() - started:.1f}s -> {out}; answer tokens {stats.get('answer_tokens', '-')}")


def _golden(cfg: Any, run: Path, splits: list[str]) -> None:
    """Labelled teacher traces of each test split (unfiltered: golden decoding needs every question)."""
    from rscaffold.cli import STAGES

    gen_cfg = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"filter_wrong": False})})
    for split in splits:
        out = run / "golden" / f"{split}.jsonl"
        if out.exists():
            continue
        started = time.perf_counter()
        traces, segmented = out.with_suffix(".traces.jsonl"), out.with_suffix(".segmented.jsonl")
        STAGES["generate"](gen_cfg, run / "testbed" / f"{split}.jsonl", traces)
        STAGES["segment"](cfg, traces, segmented)
        STAGES["label"](cfg, segmented, out)
        traces.unlink()
        segmented.unlink()
        _say(f"golden {split}: {time.perf_counter() - started:.1f}s -> {out}")


def student_dir(run: Path, name: str, seed: int) -> Path:
    return run / "students" / f"{name}-s{seed}"


def _train(cfg: Any, run: Path, demo: DemoConfig) -> None:
    from rscaffold.base_models import ModelConfig
    from rscaffold.model import META_FILE
    from rscaffold.recipes import TrainConfig
    from rscaffold.train import train

    for seed in demo.seeds:
        for s in demo.students:
            if seed not in (s.seeds or demo.seeds):
                continue
            out = student_dir(run, s.name, seed)
            if (out / META_FILE).exists():
                _say(f"train {s.name} seed {seed}: kept {out}")
                continue
            tcfg = TrainConfig.model_validate({**cfg.train.model_dump(), "seed": seed, **s.train, "recipe": s.recipe})
            if s.tokens_of:
                tcfg = tcfg.model_copy(update={"max_tokens": _tokens_seen(student_dir(run, s.tokens_of, seed))})
            if s.recipe == "predictor":
                tcfg = tcfg.model_copy(update={"init": str(student_dir(run, s.init or "scaffold", seed))})
            mcfg = ModelConfig.model_validate({**cfg.model.model_dump(), **s.model})
            started = time.perf_counter()
            summary = train(tcfg, mcfg, run / "build", out)
            _say(
                f"train {s.name} seed {seed}: {summary['steps']} steps, {summary['tokens_per_s']:.0f} tok/s, "
                f"{time.perf_counter() - started:.0f}s, loss {summary['final'].get('loss', float('nan')):.3f} -> {out}"
            )


def _tokens_seen(folder: Path) -> int:
    """Training tokens a demo student saw (an equal-token student trains after it)."""
    from rscaffold.model import META_FILE

    meta = folder / META_FILE
    if not meta.exists():
        raise InputError(f"{folder}: not trained yet; list the student named by tokens_of before this one")
    return int(json.loads(meta.read_text(encoding="utf-8"))["train"]["tokens_seen"])


def _decode(cfg: Any, run: Path, demo: DemoConfig) -> None:
    from rscaffold.decode import decode_file
    from rscaffold.schema import Question, read_jsonl, write_jsonl

    seeds = {s.name: s.seeds or demo.seeds for s in demo.students}
    for seed in demo.seeds:
        for v in demo.variants:
            needs = [v.student] + ([v.predictor] if v.predictor else [])
            if any(seed not in seeds.get(name, demo.seeds) for name in needs):
                continue
            for split in v.splits or demo.splits:
                out = run / "decoded" / f"{v.student}-s{seed}__{v.name}__{split}.jsonl"
                if out.exists():
                    continue
                questions = run / "testbed" / f"{split}.jsonl"
                if v.limit:
                    subset = run / "decoded" / "subsets" / f"{split}-{v.limit}.jsonl"
                    if not subset.exists():
                        first = itertools.islice(read_jsonl(questions, Question), v.limit)
                        write_jsonl(subset, first)
                    questions = subset
                update = {"signal_source": v.source, "prune": v.prune, "seed": seed, **v.decode}
                if v.tau is not None:
                    update["tau"] = v.tau
                dcfg = cfg.decode.model_validate({**cfg.decode.model_dump(), **update})
                golden = run / "golden" / f"{split}.jsonl"
                extras = {
                    "golden": golden if golden.exists() else None,
                    "train_traces": run / "labelled.jsonl",
                    "predictor": student_dir(run, v.predictor, seed) if v.predictor else None,
                }
                started = time.perf_counter()
                decode_file(dcfg, student_dir(run, v.student, seed), questions, out, extras)
                _say(f"decode {out.stem}: {time.perf_counter() - started:.1f}s")


# -- headline --------------------------------------------------------------------------------------


def trivial_rate(questions: Path) -> tuple[float, str, int]:
    """The most-common-answer rate of a questions file: (share, answer, n)."""
    golds = [json.loads(line)["gold"] for line in questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    answer, count = Counter(golds).most_common(1)[0]
    return count / len(golds), answer, len(golds)


def _scored(run: Path, row: str, split: str, seeds: list[int]) -> dict[tuple[int, str], bool]:
    """(seed, question id) -> correct, for the row ``<student>__<variant>`` on ``split``, over seeds."""
    student, _, variant = row.partition("__")
    out: dict[tuple[int, str], bool] = {}
    for seed in seeds:
        path = run / "scored" / f"{student}-s{seed}__{variant}__{split}.jsonl"
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                out[(seed, r["id"])] = bool(r["correct"])
    return out


def paired_difference(a: dict, b: dict, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean of a - b over the questions both answered, with a percentile bootstrap interval."""
    import numpy as np

    keys = sorted(set(a) & set(b))
    if not keys:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    d = np.array([float(a[k]) - float(b[k]) for k in keys])
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi), "n": len(d)}


def _rows(demo: DemoConfig) -> list[str]:
    return sorted({f"{v.student}__{v.name}" for v in demo.variants})


def headline(run: Path, demo: DemoConfig) -> dict[str, Any]:
    """Per split: trivial rate, every row pooled over seeds, and the comparisons fixed in advance:
    ``demo.comparisons`` and (c) each signal-quality row minus the reference row, paired differences
    over the same seeds and questions with bootstrap intervals."""
    from rscaffold.metrics import bootstrap_ci

    rows = _rows(demo)
    splits = list(dict.fromkeys([*demo.splits, *(s for v in demo.variants for s in (v.splits or []))]))
    fixed = [*demo.comparisons]
    fixed += [Comparison(name=f"(c) signal quality: {r}", a=r, b=demo.reference) for r in demo.signal_quality]
    out: dict[str, Any] = {"seeds": demo.seeds, "splits": {}}
    for split in splits:
        questions = run / "testbed" / f"{split}.jsonl"
        if not questions.exists():
            continue
        share, answer, n = trivial_rate(questions)
        entry: dict[str, Any] = {"questions": n, "trivial": {"rate": share, "answer": answer}, "rows": {}}
        scored = {row: _scored(run, row, split, demo.seeds) for row in rows}
        for row, marks in scored.items():
            if marks:
                entry["rows"][row] = bootstrap_ci([float(x) for x in marks.values()], samples=2000)
        entry["comparisons"] = [
            {"name": c.name, "a": c.a, "b": c.b, "difference": paired_difference(scored[c.a], scored[c.b])}
            for c in fixed
            if scored.get(c.a) and scored.get(c.b)
        ]
        if entry["rows"]:
            best_row = max(entry["rows"], key=lambda r: entry["rows"][r]["mean"])
            entry["best"] = {"row": best_row, **entry["rows"][best_row]}
        out["splits"][split] = entry
    return out


def _ci(ci: dict[str, Any] | None) -> str:
    if not ci or ci.get("mean") is None:
        return "-"
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def _signed(ci: dict[str, Any]) -> str:
    return f"{ci['mean']:+.3f} [{ci['lo']:+.3f}, {ci['hi']:+.3f}]"


def format_headline(h: dict[str, Any]) -> str:
    """The headline as plain text: the rows per split, then each fixed comparison per split."""
    seeds = ", ".join(map(str, h["seeds"]))
    lines = [f"seeds: {seeds}; Pass@1 (strict) with 95% bootstrap intervals, pooled over seeds"]
    rows = sorted({r for s in h["splits"].values() for r in s["rows"]})
    width = max([len(r) for r in rows] + [24])
    lines.append(f"{'':<{width}}  " + "  ".join(f"{split:<22}" for split in h["splits"]))
    lines.append(
        f"{'most-common answer':<{width}}  " + "  ".join(f"{s['trivial']['rate']:<22.3f}" for s in h["splits"].values())
    )
    for row in rows:
        lines.append(f"{row:<{width}}  " + "  ".join(f"{_ci(s['rows'].get(row)):<22}" for s in h["splits"].values()))
    names = list(dict.fromkeys(c["name"] for s in h["splits"].values() for c in s.get("comparisons", [])))
    lines.append("comparisons fixed in advance (paired over seeds and questions; 95% bootstrap intervals):")
    for name in names:
        lines.append(f"  {name}")
        for split, s in h["splits"].items():
            for c in s.get("comparisons", []):
                if c["name"] == name:
                    d = c["difference"]
                    lines.append(f"    {split:<15} {c['a']} - {c['b']} = {_signed(d)} (n={d['n']})")
    return "\n".join(lines)


def headline_html(h: dict[str, Any]) -> str:
    """The headline as an HTML block for the report."""
    import html

    from rscaffold.report import _pct

    splits = list(h["splits"])
    rows = sorted({r for s in h["splits"].values() for r in s["rows"]})
    head = "".join(f"<th>{html.escape(s)}</th>" for s in ["row", *splits])
    body = ["<tr><td class=t>most-common answer</td>" + "".join(
        f"<td>{h['splits'][s]['trivial']['rate']:.3f}</td>" for s in splits) + "</tr>"]  # fmt: skip
    for row in rows:
        cells = "".join(f"<td>{_pct(h['splits'][s]['rows'].get(row, {}))}</td>" for s in splits)
        body.append(f"<tr><td class=t>{html.escape(row)}</td>{cells}</tr>")
    diffs = []
    for split, s in h["splits"].items():
        for c in s.get("comparisons", []):
            diffs.append(
                f"<li>{html.escape(c['name'])}, {html.escape(split)}: {html.escape(c['a'])} &minus; "
                f"{html.escape(c['b'])} = {_pct(c['difference'])} (paired over {c['difference']['n']} answers)</li>"
            )
    seeds = ", ".join(map(str, h["seeds"]))
    return (
        f"<h2>Headline</h2><p>Pass@1 (strict) with 95% bootstrap intervals, pooled over seeds {seeds}.</p>"
        f'<table id="headline"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f"<h3>Comparisons fixed in advance</h3><ul>{''.join(diffs)}</ul>"
    )


# -- the command -----------------------------------------------------------------------------------


def _probe(cfg: Any, run: Path, demo: DemoConfig) -> dict[str, Any] | None:
    """The base model's look-up probe per format (``rscaffold probe``) on the test_id questions, for a
    testbed base: it shows whether the base favours one recipe's way of writing values."""
    from rscaffold.probe import lookup_probe

    questions = run / "testbed" / "test_id.jsonl"
    if not demo.probe or cfg.model.base != "testbed" or not questions.exists():
        return None
    first = list(itertools.islice(read_questions(questions), 200))
    result = lookup_probe(cfg.model.base, first)
    _say("base look-up probe: " + ", ".join(f"{k} {v:.3f}" for k, v in result["accuracy"].items()))
    return result


def read_questions(path: Path):
    from rscaffold.schema import Question, read_jsonl

    return read_jsonl(path, Question)


def run_demo(cfg: Any, run: Path) -> dict[str, Any]:
    """Every step of the demo in ``run``; returns the headline."""
    from rscaffold.evaluate import evaluate_run
    from rscaffold.report import write_report
    from rscaffold.schema import atomic_writer

    demo: DemoConfig = cfg.demo
    started = time.perf_counter()
    _data(cfg, run)
    probe = _probe(cfg, run, demo)
    _build(cfg, run)
    golden = sorted({s for v in demo.variants if v.source == "golden" for s in (v.splits or demo.splits)})
    _golden(cfg, run, golden)
    _train(cfg, run, demo)
    _decode(cfg, run, demo)
    evaluate_run(run, cfg.evaluate)
    h = headline(run, demo)
    if probe:
        h["probe"] = probe
    h["seconds"] = round(time.perf_counter() - started, 1)
    with atomic_writer(run / "headline.json") as f:
        json.dump(h, f, indent=2)
    page = write_report([run], run / "report", cfg.report)
    print(format_headline(h))
    if probe:
        from rscaffold.probe import format_probe

        print(format_probe(probe))
    print(f"report: {page}")
    print(f"run folder: {run} ({h['seconds']:.0f}s)")
    return h

"""The whole experiment in one command: ``rscaffold demo`` (and ``rscaffold experiment CONFIG``).

In one run folder, in order, each step skipped when its output is already there (so an interrupted
run resumes where it stopped):

1. the data stages of ``run.stages``: testbed, traces from the teacher (the scripted one by default,
   through the same ``generate`` path and teacher interface as an API teacher), segment, label, stats;
2. ``build``: the training sets;
3. golden traces of the test splits (the teacher's traces of the test questions, labelled the same
   way, not filtered by correctness) for the golden-signal ablation;
4. every student of ``demo.students`` for every seed of ``demo.seeds``, with an equal token budget
   (``train.max_tokens``) unless a student overrides it: ``students/<name>-s<seed>/``;
5. every decoding variant of ``demo.variants`` on its splits: ``decoded/<student>-s<seed>__<variant>__<split>.jsonl``;
6. ``evaluate`` (``results.json``), the headline (``headline.json``: per split, the most-common-answer
   rate, every variant pooled over seeds, and the scaffolded student against the best baseline with a
   paired bootstrap interval of the difference), and the HTML report (``report/index.html``).

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

SPLITS = ("test_id", "test_surface", "test_perturbed", "test_ood")
SOURCES = ("predictor-head", "predictor-generative", "golden", "random", "none")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoStudent(_Section):
    """One student to train: a recipe and its own train.* / model.* deltas."""

    name: str = Field(description="Folder name under students/ (the seed is appended: <name>-s<seed>).")
    recipe: Literal["scaffold", "predictor", "cot-sft", "long-sft", "answer-sft"] = Field(description="Recipe.")
    train: dict[str, Any] = Field({}, description="train.* keys that differ for this student.")
    model: dict[str, Any] = Field({}, description="model.* keys that differ for this student.")
    init: str | None = Field(None, description="Predictor: the demo student it starts from (default: scaffold).")


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


def _default_students() -> list[DemoStudent]:
    return [
        DemoStudent(name="scaffold", recipe="scaffold"),
        DemoStudent(
            name="predictor", recipe="predictor", init="scaffold", train={"max_tokens": 200_000, "max_examples": 20_000}
        ),
        DemoStudent(name="cot-sft", recipe="cot-sft"),
        DemoStudent(name="long-sft", recipe="long-sft"),
    ]


def _default_variants() -> list[DemoVariant]:
    return [
        DemoVariant(name="predictor-gate", student="scaffold", source="predictor-head"),
        DemoVariant(name="golden", student="scaffold", source="golden", splits=["test_id"]),
        DemoVariant(name="random", student="scaffold", source="random", splits=["test_id"]),
        DemoVariant(name="summaries", student="scaffold", source="predictor-head", prune=True, splits=["test_id"]),
        DemoVariant(
            name="generative-predictor",
            student="scaffold",
            source="predictor-generative",
            predictor="predictor",
            splits=["test_id"],
            limit=100,
        ),
        DemoVariant(name="free", student="cot-sft"),
        DemoVariant(name="free", student="long-sft"),
    ]


class DemoConfig(_Section):
    """What ``rscaffold demo`` trains, decodes and compares."""

    seeds: list[int] = Field([0], min_length=1, description="Training seeds; every student is trained per seed.")
    splits: list[str] = Field(list(SPLITS), description="Testbed splits decoded by variants without their own.")
    students: list[DemoStudent] = Field(default_factory=_default_students, description="Students to train.")
    variants: list[DemoVariant] = Field(default_factory=_default_variants, description="Decoding variants.")
    scaffold: str = Field(
        "scaffold__predictor-gate", description="The headline's scaffolded row: <student>__<variant>."
    )
    baselines: list[str] = Field(
        ["cot-sft__free", "long-sft__free"], description="The headline's baseline rows; the best one is compared."
    )
    goal_accuracy: float = Field(0.30, description="The regime goal on test_id: the best method's Pass@1 ...")
    goal_trivial_ratio: float = Field(3.0, description="... and its ratio to the most-common-answer rate.")


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

    out = run / "build"
    if (out / "stats.json").exists():
        _say(f"build: kept {out}")
        return
    started = time.perf_counter()
    build.run(run / "labelled.jsonl", out, cfg.build, cfg.testbed, cfg.run.seed)
    _say(f"build: {time.perf_counter() - started:.1f}s -> {out}")


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
            out = student_dir(run, s.name, seed)
            if (out / META_FILE).exists():
                _say(f"train {s.name} seed {seed}: kept {out}")
                continue
            tcfg = TrainConfig.model_validate({**cfg.train.model_dump(), "seed": seed, **s.train, "recipe": s.recipe})
            if s.recipe == "predictor":
                tcfg = tcfg.model_copy(update={"init": str(student_dir(run, s.init or "scaffold", seed))})
            mcfg = ModelConfig.model_validate({**cfg.model.model_dump(), **s.model})
            started = time.perf_counter()
            summary = train(tcfg, mcfg, run / "build", out)
            _say(
                f"train {s.name} seed {seed}: {summary['steps']} steps, {summary['tokens_per_s']:.0f} tok/s, "
                f"{time.perf_counter() - started:.0f}s, loss {summary['final'].get('loss', float('nan')):.3f} -> {out}"
            )


def _decode(cfg: Any, run: Path, demo: DemoConfig) -> None:
    from rscaffold.decode import decode_file
    from rscaffold.schema import Question, read_jsonl, write_jsonl

    for seed in demo.seeds:
        for v in demo.variants:
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


def headline(run: Path, demo: DemoConfig) -> dict[str, Any]:
    """Per split: trivial rate, every row pooled over seeds, scaffold vs the best baseline."""
    from rscaffold.metrics import bootstrap_ci

    rows = sorted({f"{v.student}__{v.name}" for v in demo.variants})
    splits = list(dict.fromkeys([*demo.splits, *(s for v in demo.variants for s in (v.splits or []))]))
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
        baselines = [b for b in demo.baselines if b in entry["rows"]]
        if demo.scaffold in entry["rows"] and baselines:
            best = max(baselines, key=lambda b: entry["rows"][b]["mean"])
            entry["comparison"] = {
                "scaffold": demo.scaffold,
                "best_baseline": best,
                "difference": paired_difference(scored[demo.scaffold], scored[best]),
            }
        if entry["rows"]:
            best_row = max(entry["rows"], key=lambda r: entry["rows"][r]["mean"])
            entry["best"] = {"row": best_row, **entry["rows"][best_row]}
        out["splits"][split] = entry
    goal = out["splits"].get("test_id", {})
    if goal.get("best"):
        best, trivial = goal["best"]["mean"], goal["trivial"]["rate"]
        out["regime"] = {
            "best": goal["best"]["row"],
            "accuracy": best,
            "trivial": trivial,
            "ratio": best / trivial if trivial else None,
            "goal": {"accuracy": demo.goal_accuracy, "trivial_ratio": demo.goal_trivial_ratio},
            "reached": best >= demo.goal_accuracy and best >= demo.goal_trivial_ratio * trivial,
        }
    return out


def _ci(ci: dict[str, Any] | None) -> str:
    if not ci or ci.get("mean") is None:
        return "-"
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def format_headline(h: dict[str, Any]) -> str:
    """The headline as a plain-text table."""
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
    for split, s in h["splits"].items():
        c = s.get("comparison")
        if c:
            lines.append(
                f"{split}: {c['scaffold']} - {c['best_baseline']} = {_ci(c['difference'])} (n={c['difference']['n']})"
            )
    r = h.get("regime")
    if r:
        verdict = "reached" if r["reached"] else "NOT reached"
        lines.append(
            f"regime on test_id: best {r['best']} {r['accuracy']:.3f} = {r['ratio']:.1f}x the most-common-answer "
            f"rate {r['trivial']:.3f}; goal >= {r['goal']['accuracy']:.2f} and >= {r['goal']['trivial_ratio']:.0f}x: "
            f"{verdict}"
        )
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
        c = s.get("comparison")
        if c:
            diffs.append(
                f"<li>{html.escape(split)}: {html.escape(c['scaffold'])} &minus; {html.escape(c['best_baseline'])} "
                f"= {_pct(c['difference'])} (paired over {c['difference']['n']} answers)</li>"
            )
    regime = h.get("regime")
    verdict = ""
    if regime:
        verdict = (
            f"<p>Regime on test_id: best row {html.escape(regime['best'])} at {regime['accuracy']:.3f}, "
            f"{regime['ratio']:.1f}x the most-common-answer rate ({regime['trivial']:.3f}); the goal "
            f"(&ge; {regime['goal']['accuracy']:.2f} and &ge; {regime['goal']['trivial_ratio']:.0f}x) is "
            f"<b>{'reached' if regime['reached'] else 'not reached'}</b>.</p>"
        )
    seeds = ", ".join(map(str, h["seeds"]))
    return (
        f"<h2>Headline</h2><p>Pass@1 (strict) with 95% bootstrap intervals, pooled over seeds {seeds}.</p>"
        f'<table id="headline"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f"<ul>{''.join(diffs)}</ul>{verdict}"
    )


# -- the command -----------------------------------------------------------------------------------


def run_demo(cfg: Any, run: Path) -> dict[str, Any]:
    """Every step of the demo in ``run``; returns the headline."""
    from rscaffold.evaluate import evaluate_run
    from rscaffold.report import write_report
    from rscaffold.schema import atomic_writer

    demo: DemoConfig = cfg.demo
    started = time.perf_counter()
    _data(cfg, run)
    _build(cfg, run)
    golden = sorted({s for v in demo.variants if v.source == "golden" for s in (v.splits or demo.splits)})
    _golden(cfg, run, golden)
    _train(cfg, run, demo)
    _decode(cfg, run, demo)
    evaluate_run(run, cfg.evaluate)
    h = headline(run, demo)
    h["seconds"] = round(time.perf_counter() - started, 1)
    with atomic_writer(run / "headline.json") as f:
        json.dump(h, f, indent=2)
    page = write_report([run], run / "report", cfg.report)
    print(format_headline(h))
    print(f"report: {page}")
    print(f"run folder: {run} ({h['seconds']:.0f}s)")
    return h

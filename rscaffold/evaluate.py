"""The evaluate stage: extract answers, score them, and measure consistency and signals (METHOD.md section 6).

Two ways in:
- ``rscaffold evaluate --run-dir DIR`` scores every ``DIR/decoded/<student>-s<seed>__<variant>__<split>.jsonl``
  (:class:`~rscaffold.schema.Decoded` records) and writes ``DIR/results.json`` (one entry per method,
  signal source, benchmark and split) and ``DIR/scored/<same name>.jsonl`` (one record per question);
  with ``evaluate.trackers`` (null: ``train.trackers``), Pass@1 per student, variant and split also goes
  to those Accelerate trackers (TensorBoard: ``DIR/logs/evaluate``);
- ``rscaffold evaluate --benchmark NAME --predictions FILE --output FILE`` scores outputs that came from
  elsewhere (JSONL with ``id``, ``prediction``, ``gold``, optionally ``question`` and ``metadata``).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rscaffold import metrics, runs
from rscaffold.answers import EXTRACTIONS, Extraction
from rscaffold.benchmarks import SPECS
from rscaffold.config import Config, EvaluateConfig, LabelConfig
from rscaffold.label import run_policy
from rscaffold.schema import Decoded, InputError, Question, Step, Trace, atomic_writer, read_json_objects, read_jsonl
from rscaffold.signals import Signal
from rscaffold.stats import signal_key

log = logging.getLogger(__name__)
SIGNAL_KEYS = [s.key for s in Signal]


# -- scoring one answer ---------------------------------------------------------------------------


def extraction_for(benchmark: str) -> Extraction:
    if benchmark not in SPECS:
        raise InputError(f"unknown benchmark {benchmark!r}; known: {', '.join(SPECS)}")
    return EXTRACTIONS[SPECS[benchmark].extraction]


def score_answer(ex: Extraction, text: str, gold: str, meta: dict[str, Any], primary: str = "strict") -> dict:
    """Both extractions of ``text`` and whether each equals ``gold``; ``correct`` is the primary one's."""
    strict, flexible = ex.strict(text, meta), ex.flexible(text, meta)
    out = {
        "answer_strict": strict,
        "answer_flexible": flexible,
        "correct_strict": ex.equal(strict, gold),
        "correct_flexible": ex.equal(flexible, gold),
    }
    return {**out, "correct": out[f"correct_{primary}"]}


def score_decoded(d: Decoded, question: Question | None, ex: Extraction, primary: str) -> dict[str, Any]:
    """One scored record: answers, correctness, tokens, equation and conclusion counts, signals."""
    meta = {**d.metadata, **(question.metadata if question else {})}
    gold = d.gold if d.gold is not None else (question.gold if question else None)
    if gold is None:
        raise InputError(f"question {d.question_id}: no gold answer in the decoded record or the questions")
    thinking = [s.text for s in d.steps if s.signal != Signal.RESPONSE]
    found = [e for text in [*thinking, d.answer_text] for e in metrics.equations(text)]
    truth = meta.get("values") if d.benchmark == "testbed" else None
    adherence = adherence_pairs(d)
    return {
        "id": d.question_id,
        "gold": gold,
        **score_answer(ex, d.answer_text, gold, meta, primary),
        "tokens": d.tokens,
        "steps": len(d.steps),
        "stop_reason": d.stop_reason,
        "equations": len(found),
        "equations_right": sum(e["right"] for e in found),
        "conclusions": metrics.conclusion_metrics(thinking, truth),
        "signals": [s.signal.key for s in d.steps if s.signal is not None],
        "adherence": adherence,
        "swap": swapped_step(d, adherence),
        "golden_signals": d.metadata.get("golden_signals"),
        "ops": meta.get("ops"),
        "split": meta.get("split", d.split),
        "group": meta.get("group"),
    }


@functools.cache
def _labeller() -> Any:
    from rscaffold.label.learned import LearnedLabeller

    return LearnedLabeller.load(LabelConfig().learned)


def adherence_pairs(d: Decoded, policy: LabelConfig | None = None) -> list[list[str]]:
    """(the signal a step was written under, the label of its text) for each guided thinking step: the
    default label policy (paper keywords, then the shipped labeller) reads the decoded steps as it reads
    a teacher's (``policy``: another one)."""
    guided = [s for s in d.steps if s.signal is not None and s.signal is not Signal.RESPONSE]
    if not guided:
        return []
    answer = Step(text=d.answer_text, signal=Signal.RESPONSE)
    steps = [Step(text=s.text, sep=s.sep or "\n\n") for s in guided] + [answer]
    trace = Trace(question_id=d.question_id, question=d.question, teacher="student", thinking="", steps=steps)
    learned = _labeller() if policy is None else None
    (labelled,) = run_policy([trace], policy or LabelConfig(), learned=learned)
    return [[s.signal.key, signal_key(t.signal)] for s, t in zip(guided, labelled.steps, strict=False)]


def swapped_step(d: Decoded, pairs: list[list[str]]) -> list[str] | None:
    """For a ``golden-swap`` row that wrote its swapped step: (the new signal, the label of that step,
    the teacher's signal there); None otherwise."""
    swap = d.metadata.get("swap")
    if not swap or swap["step"] >= len(pairs) or pairs[swap["step"]][0] != swap["signal"]:
        return None
    return [swap["signal"], pairs[swap["step"]][1], swap["golden"]]


# -- summaries ------------------------------------------------------------------------------------


def _share(num: float, den: float) -> float | None:
    return num / den if den else None


def summarize(scored: list[dict[str, Any]], cfg: EvaluateConfig) -> dict[str, Any]:
    """Pass@1 (strict, flexible) with intervals, tokens, accuracy by ops and split, consistency, signals."""
    ci = {"samples": cfg.bootstrap_samples, "level": cfg.ci_level, "seed": cfg.seed}
    tokens = [r["tokens"] for r in scored if r.get("tokens") is not None]
    out = {
        "n": len(scored),
        "pass@1_strict": metrics.bootstrap_ci([r["correct_strict"] for r in scored], **ci),
        "pass@1_flexible": metrics.bootstrap_ci([r["correct_flexible"] for r in scored], **ci),
        "tokens_per_answer": sum(tokens) / len(tokens) if tokens else None,
        "invalid_strict": sum(r["answer_strict"] == "[invalid]" for r in scored),
    }
    if any(r.get("ops") is not None for r in scored):
        out["accuracy_by_ops"] = metrics.accuracy_by((r["ops"], r["correct"]) for r in scored if r.get("ops"))
    if len({r.get("split") for r in scored}) > 1:
        out["accuracy_by_split"] = metrics.accuracy_by((r["split"], r["correct"]) for r in scored)
    out["consistency"] = consistency(scored)
    if any(r.get("signals") for r in scored):
        out["signals"] = signal_summary(scored)
    return out


def consistency(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Perturbation groups, equations that hold, conclusions that are true or later contradicted."""
    conc: Counter[str] = Counter()
    for r in scored:
        conc.update(r.get("conclusions") or {})
    equations = sum(r.get("equations", 0) for r in scored)
    return {
        "groups": metrics.group_consistency((r["group"], r["correct"]) for r in scored if r.get("group")),
        "equations": equations,
        "equations_right": _share(sum(r.get("equations_right", 0) for r in scored), equations),
        "conclusions": conc["stated"],
        "conclusions_true": _share(conc["true"], conc["checked"]),
        "conclusions_contradicted": _share(conc["contradicted"], conc["stated"]),
    }


def signal_summary(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Distribution and transitions of the student's signals; agreement with the teacher's where known."""
    student = [r["signals"] for r in scored]
    matrix = metrics.transitions(student, SIGNAL_KEYS)
    out: dict[str, Any] = {
        "distribution": dict(Counter(s for seq in student for s in seq)),
        "transitions": matrix.tolist(),
        "keys": SIGNAL_KEYS,
    }
    written = [p for r in scored for p in r.get("adherence") or []]
    if written:
        out["adherence"] = metrics.adherence(written)
    swaps = [r["swap"] for r in scored if r.get("swap")]
    if swaps:
        out["swap_sensitivity"] = metrics.adherence([s[:2] for s in swaps]) | {
            "kept_golden": sum(label == golden for _, label, golden in swaps) / len(swaps)
        }
    pairs = [(r["signals"], r["golden_signals"]) for r in scored if r.get("golden_signals")]
    if pairs:
        teacher = metrics.transitions([t for _, t in pairs], SIGNAL_KEYS)
        distances = [metrics.edit_distance(s, t) / max(len(s), len(t), 1) for s, t in pairs]
        out["next_signal"] = metrics.next_signal_accuracy(pairs)
        out["edit_distance"] = sum(distances) / len(distances)
        out["transition_divergence"] = metrics.transition_divergence(matrix, teacher)
    return out


# -- run folders ----------------------------------------------------------------------------------


def load_questions(run_dir: Path, benchmark: str, split: str) -> dict[str, Question]:
    """The questions behind a decoded file, where the run folder has them (``testbed/<split>.jsonl``)."""
    path = runs.questions(run_dir, split) if benchmark == "testbed" else None
    if path is None or not path.is_file():
        return {}
    return {q.id: q for q in read_jsonl(path, Question)}


def evaluate_file(path: Path, run_dir: Path, cfg: EvaluateConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score one decoded file: its results.json entry and its scored records."""
    decoded = list(read_jsonl(path, Decoded))
    first = decoded[0]
    ex = extraction_for(first.benchmark)
    questions = load_questions(run_dir, first.benchmark, first.split)
    scored = [score_decoded(d, questions.get(d.question_id), ex, cfg.primary) for d in decoded]
    spec = SPECS[first.benchmark]
    name = runs.Decoding.parse(path.stem)
    entry = {
        "file": path.name,
        "student": name.student if name else path.stem,
        "seed": name.seed if name else None,
        "variant": name.variant if name else "",
        "method": first.method,
        "signal_source": first.signal_source,
        "benchmark": first.benchmark,
        "benchmark_version": spec.version,
        "prompt": spec.prompt,
        "split": first.split,
        "extraction": {"name": ex.name, "version": ex.version},
        **summarize(scored, cfg),
    }
    if first.metadata.get("tau") is not None:  # the gate's threshold, for the report's tau sweep
        entry["tau"] = first.metadata["tau"]
    return entry, scored


def write_scored(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with atomic_writer(path) as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The evaluate stage in a run folder: score every ``decoded/*.jsonl``; writes ``results.json`` and ``scored/``."""
    files = runs.decoded_files(run_dir)
    trackers = cfg.evaluate.trackers if cfg.evaluate.trackers is not None else cfg.train.trackers
    if trackers:  # a missing package fails before the scoring, not after it
        from rscaffold.train import check_trackers

        check_trackers(trackers, "evaluate.trackers" if cfg.evaluate.trackers is not None else "train.trackers")
    if not files:
        raise InputError(
            f"{runs.decoded_dir(run_dir)}: no decoded files; run `rscaffold decode --run-dir {run_dir}` first"
        )
    entries = []
    for path in files:
        entry, scored = evaluate_file(path, run_dir, cfg.evaluate)
        write_scored(runs.scored(run_dir, path.name), scored)
        entries.append(entry)
    results = {
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": cfg.evaluate.model_dump(),
        "extractions": {e.name: e.version for e in EXTRACTIONS.values()},
        "entries": entries,
    }
    if calibration := head_calibration(cfg, run_dir):
        results["calibration"] = calibration
    with atomic_writer(runs.results(run_dir)) as f:
        json.dump(results, f, indent=2)
    if trackers:
        log_results(trackers, runs.logs_dir(run_dir) / "evaluate", entries, cfg.evaluate.primary)
    return results


def tracker_values(entries: list[dict[str, Any]], primary: str) -> dict[str, float]:
    """``accuracy/<student>-s<seed>/<variant>/<split>``: the primary Pass@1 of each decoded file."""
    values = {}
    for e in entries:
        row = f"{e['student']}-s{e['seed']}/{e['variant']}" if e["seed"] is not None else e["student"]
        if (mean := e[f"pass@1_{primary}"]["mean"]) is not None:
            values[f"accuracy/{row}/{e['split']}"] = mean
    return values


def log_results(trackers: list[str], logs: Path, entries: list[dict[str, Any]], primary: str) -> None:
    """Pass@1 per student, variant and split to Accelerate ``trackers``, their files under ``logs``."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    folders = ProjectConfiguration(project_dir=str(logs), logging_dir=str(logs))
    accelerator = Accelerator(log_with=trackers, project_config=folders)
    accelerator.init_trackers("rscaffold", init_kwargs={"wandb": {"name": logs.name}})
    accelerator.log(tracker_values(entries, primary), step=0)
    for tracker in accelerator.trackers:  # not end_training(): under a launcher it would end the process group
        tracker.finish()


def head_calibration(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The signal head's reliability curve and ECE on the golden (held-out, labelled) traces of each
    test split (the first ``evaluate.calibration_traces``), for every trained student with a head:
    ``{"<student>-s<seed>": {split: ...}}``."""
    from rscaffold.calibration import HeadReader, reliability

    exp, out, limit = cfg.experiment, {}, cfg.evaluate.calibration_traces
    splits = [s for s in exp.splits if runs.golden(run_dir, s).exists()] if limit else []
    for student in exp.students:
        for seed in student.seeds or exp.seeds:
            folder = runs.student_dir(run_dir, student.name, seed)
            meta = folder / "rscaffold_student.json"
            if not splits or not meta.exists() or not json.loads(meta.read_text()).get("signal_head"):
                continue
            head = HeadReader(folder, cfg.build)
            out[folder.name] = {
                split: reliability(*head.decisions(_first(runs.golden(run_dir, split), limit))) for split in splits
            }
    return out


def _first(path: Path, n: int) -> Iterable[Trace]:
    return itertools.islice(read_jsonl(path, Trace), n)


# -- predictions from elsewhere -------------------------------------------------------------------


def read_predictions(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line, record) of a predictions file; each needs ``id``, ``prediction`` and ``gold``. The output
    of ``rscaffold decode`` is read as one (``question_id``, ``answer_text``, ``gold``, ``tokens``)."""
    for lineno, obj in read_json_objects(path):
        if "question_id" in obj and "answer_text" in obj and "prediction" not in obj:
            obj = {**obj, "id": obj["question_id"], "prediction": obj["answer_text"]}
        for name in ("id", "prediction", "gold"):
            if obj.get(name) is None:
                raise InputError(f"{path}:{lineno}: field '{name}' missing")
        if not isinstance(obj["prediction"], str):
            raise InputError(f"{path}:{lineno}: field 'prediction': expected a string")
        tokens = obj.get("tokens")
        if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int | float)):
            raise InputError(f"{path}:{lineno}: field 'tokens': expected a number")
        yield lineno, obj


def score_predictions(path: Path, benchmark: str, cfg: EvaluateConfig) -> tuple[dict[str, Any], list[dict]]:
    """Score a predictions file against its own gold answers; returns (summary, scored records)."""
    ex = extraction_for(benchmark)
    scored = []
    for _, p in read_predictions(path):
        meta = p.get("metadata") or {}
        record = {"id": str(p["id"]), "gold": str(p["gold"]), **score_answer(ex, p["prediction"], str(p["gold"]), meta)}
        scored.append(record | ({"tokens": p["tokens"]} if "tokens" in p else {}))
    summary = {"benchmark": benchmark, "extraction": {"name": ex.name, "version": ex.version}}
    return summary | summarize(scored, cfg), scored

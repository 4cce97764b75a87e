"""Training a learned labeller [ours]: ``rscaffold labeller train``.

The context kind is chosen among candidate settings and policy thresholds by cross-validation grouped by
trace on the judged train split, scored against the judge through the label policy's own code, fitted on
the whole train split and scored once on the held-out split (reported only: it chooses nothing). The
distant kind is fitted on keyword-opened steps and scored on held-out traces.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rscaffold.config import LabelConfig
from rscaffold.label import run_policy
from rscaffold.label.fit import (
    CANDIDATES,
    Example,
    FitSettings,
    Sequence,
    check_texts,
    distant_sequences,
    examples,
    fit_context,
    fit_sklearn,
    from_sklearn,
    judged_sequences,
    scripted_traces,
)
from rscaffold.label.learned import THINKING, Context, LearnedLabeller
from rscaffold.label.quality import JUDGED, kappa
from rscaffold.schema import InputError, Step, Trace, read_jsonl
from rscaffold.signals import Lexicon, LexiconError, Signal, load_lexicon

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ judging a context labeller

JUDGE_TARGET = {"agreement": 0.87, "contrast": 0.8}
"""What the labelling of real steps is measured against: agreement with the judge, and its Contrast recall."""


def policy_pairs(model: LearnedLabeller, data: list[Sequence], overrule: float | None) -> Counter[tuple[str, str]]:
    """(judge label, policy label) of every labelled step: the default policy's shape (paper keywords, then
    ``model`` left to right, overruling a keyword at ``overrule``), run by the policy's own code."""
    traces = [Trace(question_id=q.group, thinking="", steps=[Step(text=t) for t in q.texts]) for q in data]
    pairs: Counter[tuple[str, str]] = Counter()
    labelled = run_policy(traces, LabelConfig(learned=None, learned_overrule=overrule), learned=model)
    for seq, trace in zip(data, labelled, strict=True):
        for truth, step in zip(seq.signals, trace.steps, strict=True):
            if truth is not None:
                pairs[(truth.key, step.signal.key if step.signal is not None else "none")] += 1
    return pairs


def judge_scores(pairs: Counter[tuple[str, str]]) -> dict[str, Any]:
    """Agreement (``accuracy``), Cohen's kappa, and recall of each judge signal (``by_signal``)."""
    n = sum(pairs.values())
    by = {}
    for s in THINKING:
        total = sum(v for (a, _), v in pairs.items() if a == s.key)
        if total:
            by[s.key] = {"steps": total, "accuracy": round(pairs[(s.key, s.key)] / total, 4)}
    agree = sum(v for (a, b), v in pairs.items() if a == b) / n if n else 0.0
    return {"steps": n, "accuracy": round(agree, 4), "kappa": kappa(pairs), "by_signal": by}


def shortfall(scores: dict[str, Any]) -> float:
    """Distance to :data:`JUDGE_TARGET`, each axis relative to its target (0: both reached): the choice rule."""
    agree = max(0.0, 1 - scores["accuracy"] / JUDGE_TARGET["agreement"])
    contrast = scores["by_signal"].get("contrast", {"accuracy": 0.0})["accuracy"]
    return float(np.hypot(agree, max(0.0, 1 - contrast / JUDGE_TARGET["contrast"])))


def cross_validate(
    judged: list[Sequence], extra: list[Sequence], s: FitSettings, overrules: list[float | None], folds: int
) -> dict[str, dict[str, Any]]:
    """Scores per overrule of ``folds``-fold cross-validation grouped by trace over ``judged`` (``extra``,
    distant sequences, are in every training part)."""
    groups = sorted({q.group for q in judged})
    fold = {g: k % folds for k, g in enumerate(groups)}
    pairs: dict[str, Counter[tuple[str, str]]] = {str(o): Counter() for o in overrules}
    for f in range(folds):
        model = fit_context([q for q in judged if fold[q.group] != f] + extra, s)
        for o in overrules:
            pairs[str(o)] += policy_pairs(model, [q for q in judged if fold[q.group] == f], o)
    return {o: judge_scores(p) for o, p in pairs.items()}


OVERRULES: tuple[float | None, ...] = (0.0, 0.5, 0.7, 0.9, None)
"""Candidate ``label.learned_overrule`` values, chosen jointly with the fit settings (None: never overrule)."""


def choose(table: list[dict[str, Any]], overrules: list[float | None]) -> tuple[int, float | None]:
    """The (candidate, overrule) pair with the smallest :func:`shortfall` of its cross-validation scores;
    ties go to the earlier candidate and the earlier overrule."""
    pairs = itertools.product(range(len(table)), overrules)
    return min(pairs, key=lambda ko: shortfall(table[ko[0]]["by_overrule"][str(ko[1])]))


def held_out_scores(model: LearnedLabeller, held: list[Sequence], overrule: float | None) -> dict[str, Any]:
    """Scores on the held-out split, pooled (``judge``) and per trace set (``judge/SET``)."""
    scores = {"judge": judge_scores(policy_pairs(model, held, overrule))}
    for source in sorted({q.source for q in held}):
        scores[f"judge/{source}"] = judge_scores(policy_pairs(model, [q for q in held if q.source == source], overrule))
    return scores


def train_context(
    judged: list[Sequence],
    extra: list[Sequence],
    candidates: list[FitSettings],
    overrules: list[float | None],
    folds: int,
) -> LearnedLabeller:
    """Choose a candidate and the policy's overrule by cross-validation on the judged train split
    (:func:`choose`), fit the choice on the whole train split, then score it on the held-out split at that
    overrule (reported only: it chose nothing)."""
    train = [q for q in judged if not q.held_out]
    table = []
    for s in candidates:
        cv = cross_validate(train, extra, s, overrules, folds)
        settings = {name: getattr(s, name) for name in CANDIDATES}
        table.append(settings | {"by_overrule": cv})
        log.info("cross-validation %s: %s", settings, {o: _line(r) for o, r in cv.items()})
    best, overrule = choose(table, overrules)
    model = fit_context(train + extra, candidates[best])
    model.meta = {
        "training": {
            "judged_steps": sum(len(q.texts) for q in train),
            "judged_traces": len(train),
            "distant": dict(Counter(q.source for q in extra)),
            "settings": asdict(candidates[best]),
        },
        "cross_validation": {"folds": folds, "overrule": overrule, "candidates": table, "chosen": best},
        "held_out": held_out_scores(model, [q for q in judged if q.held_out], overrule),
        "held_out_overrule": overrule,
    }
    return model


# ------------------------------------------------------------------ the distant kind's training


def accuracy_by_signal(truth: list[Signal], pred: list[Signal]) -> dict[str, Any]:
    """Overall accuracy and accuracy per true signal (recall), with step counts."""
    right = Counter(t for t, p in zip(truth, pred, strict=True) if t == p)
    total = Counter(truth)
    per = {s.key: {"steps": total[s], "accuracy": round(right[s] / total[s], 4)} for s in THINKING if total[s]}
    overall = round(sum(right.values()) / len(truth), 4) if truth else 0.0
    return {"steps": len(truth), "accuracy": overall, "by_signal": per}


def train(data: list[Example], lexicon: str, s: FitSettings, sources: dict[str, Any]) -> LearnedLabeller:
    """Fit on the examples not held out; evaluate on the held-out ones (per supervision kind)."""
    fit = [e for e in data if not e.held_out]
    if len({e.signal for e in fit}) < 2:
        raise InputError("labeller train: fewer than two signals among the training examples")
    vec, clf = fit_sklearn([e.text for e in fit], [int(e.signal) for e in fit], s)
    meta = {"training": {"sources": sources, "steps": dict(Counter(f"{e.supervision}" for e in fit))}}
    model = from_sklearn(vec, clf, lexicon, s.features, meta)
    model.meta["held_out"] = evaluate(model, [e for e in data if e.held_out])
    return model


def evaluate(model: LearnedLabeller, held: list[Example]) -> dict[str, Any]:
    """Accuracy per supervision kind: over all sets (``keyword``), the real ones (``keyword/real``), each set."""
    pred = [sig for sig, _ in model.classify([e.text for e in held])]
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(held):
        groups.setdefault(e.supervision, []).append(i)
        groups.setdefault(f"{e.supervision}/{e.source}", []).append(i)
        if e.source != "testbed":
            groups.setdefault(f"{e.supervision}/real", []).append(i)
    return {
        g: accuracy_by_signal([held[i].signal for i in ix], [pred[i] for i in ix]) for g, ix in sorted(groups.items())
    }


# ------------------------------------------------------------------ command


def add_train_labeller_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold labeller train``."""
    p.add_argument("--input", nargs="*", type=Path, default=[], help="segmented (or labelled) trace files; with "
                   "--judged: only checked to hold the judged steps' texts")  # fmt: skip
    p.add_argument("--output", type=Path, required=True, help="folder to write the labeller to")
    p.add_argument("--judged", help="judge-labelled step rows (a file, or 'shipped'): train the context kind on "
                   "their train split, choosing by cross-validation grouped by trace")  # fmt: skip
    p.add_argument("--lexicon", default="extended", help="lexicon of the distant labels (stripped from the text)")
    p.add_argument("--testbed", type=int, default=0, help="also train on N scripted-teacher traces (distant labels)")
    p.add_argument("--seed", type=int, default=1, help="seed of the testbed traces")
    p.add_argument("--truth", action="store_true", help="distant kind: train on true signals where steps carry them")
    p.add_argument("--held-out", type=float, default=0.1, help="distant kind: share of traces held out")
    p.add_argument("--max-terms", type=int, default=FitSettings.max_terms, help="vocabulary size")
    p.add_argument("--next-chars", type=int, default=Context.next_chars, help="context kind: characters of the "
                   "next step's opening read (0: none)")  # fmt: skip
    for name, help_ in CANDIDATES.items():
        default = getattr(FitSettings, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=float, nargs="+", default=[default], help=help_)
    p.add_argument("--overrule", type=_overrule, nargs="+", default=list(OVERRULES), help="context kind: "
                   "candidate label.learned_overrule values ('none': never), chosen with the settings")  # fmt: skip
    p.add_argument("--folds", type=int, default=5, help="context kind: cross-validation folds")


def cmd_train_labeller(args: argparse.Namespace) -> int:
    """Train a learned labeller from trace files (and testbed traces); print its held-out scores."""
    try:
        lexicon = load_lexicon(args.lexicon)
    except LexiconError as e:
        raise InputError(str(e)) from None
    if args.judged:
        return _train_context(args, lexicon)
    data: list[Example] = []
    sources: dict[str, Any] = {}
    for path in args.input:
        name = path.name.split(".")[0]
        part = list(examples(read_jsonl(path, Trace), lexicon, args.truth, args.held_out, name))
        sources[name] = len(part)
        data += part
    if args.testbed:
        traces = scripted_traces(args.testbed, args.seed)
        part = list(examples(traces, lexicon, args.truth, args.held_out, "testbed"))
        sources["testbed"] = {"traces": args.testbed, "seed": args.seed, "examples": len(part)}
        data += part
    if not data:
        raise InputError("labeller train: no training examples (give --input FILE... or --testbed N)")
    settings = FitSettings(max_terms=args.max_terms, c=args.c[0], class_weight_power=args.class_weight_power[0])
    model = train(data, args.lexicon, settings, sources)
    model.meta["training"] |= {"truth": args.truth, "held_out_share": args.held_out, "settings": asdict(settings)}
    model.save(args.output)
    for group, r in model.meta["held_out"].items():
        per = " ".join(f"{k} {v['accuracy']:.3f}" for k, v in r["by_signal"].items())
        print(f"held out {group}: {r['steps']} steps, accuracy {r['accuracy']:.3f} ({per})")
    return 0


def _train_context(args: argparse.Namespace, lexicon: Lexicon) -> int:
    path = JUDGED if args.judged == "shipped" else Path(args.judged)
    judged = judged_sequences(path)
    checked = sum(check_texts(judged, read_jsonl(p, Trace), p) for p in args.input)
    extra = distant_sequences(scripted_traces(args.testbed, args.seed), lexicon, "testbed") if args.testbed else []
    grid = itertools.product(*(getattr(args, name) for name in CANDIDATES))
    shape = {"max_terms": args.max_terms, "context": Context(next_chars=args.next_chars)}
    candidates = [FitSettings(**shape, **dict(zip(CANDIDATES, v, strict=True))) for v in grid]
    model = train_context(judged, extra, candidates, args.overrule, args.folds)
    model.meta["training"] |= {"judged": path.name, "traces_checked": checked, "lexicon": args.lexicon}
    model.meta["training"] |= {"testbed": {"traces": args.testbed, "seed": args.seed}}
    model.save(args.output)
    cv = model.meta["cross_validation"]
    for k, row in enumerate(cv["candidates"]):
        for o, r in row["by_overrule"].items():
            mark = " (chosen)" if k == cv["chosen"] and o == str(cv["overrule"]) else ""
            settings = " ".join(f"{name} {row[name]}" for name in CANDIDATES)
            print(f"cv {settings} overrule {o}: {_line(r)}{mark}")
    for group, r in model.meta["held_out"].items():
        print(f"held out {group} (overrule {cv['overrule']}): {_line(r)}")
    return 0


def _overrule(text: str) -> float | None:
    """An ``--overrule`` candidate: a probability, or ``none`` (never overrule)."""
    if text.lower() in ("none", "null"):
        return None
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1] or none, got {text!r}")
    return value


def _line(r: dict[str, Any]) -> str:
    contrast = r["by_signal"].get("contrast", {"accuracy": float("nan")})["accuracy"]
    return f"{r['steps']} steps, agreement {r['accuracy']:.3f}, kappa {r['kappa']:.3f}, contrast recall {contrast:.3f}"

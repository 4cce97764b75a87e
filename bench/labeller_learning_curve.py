"""How the context labeller's agreement with the LLM judge grows with the number of judged traces it learns
from: grouped 5-fold cross-validation on the train split of the shipped judge labels, the training part of
each fold cut to a nested share of the train traces (a fold trains on about 4/5 of the share's traces), the
held-out part of each fold kept whole.

    python bench/labeller_learning_curve.py [--fractions 0.25 0.5 1] [--testbed 1000] [--seed 1]

Settings are the shipped default's (``labellers/default/labeller.json``), the distant part is the build
script's (scripted-teacher traces, seed 1 unless ``--seed``, extended lexicon). Per share it prints the default policy's
agreement, kappa and Contrast recall (overrule 0: the labeller labels every step), and the best agreement
reachable with Contrast recall of at least 0.8 by adding an offset to Contrast's log-probability (the
issue's two targets at once), then a straight line through agreement against log2(traces). The held-out
split is not read. About 10 minutes on one core; needs scikit-learn.
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections import Counter

import numpy as np

from rscaffold.label.fit import FitSettings, distant_sequences, fit_context, judged_sequences, scripted_traces
from rscaffold.label.learned import START, LearnedLabeller, load
from rscaffold.label.quality import JUDGED
from rscaffold.label.training import JUDGE_TARGET, judge_scores
from rscaffold.signals import Signal, load_lexicon

OFFSETS = np.round(np.linspace(-3, 3, 25), 2)


def shipped_settings() -> FitSettings:
    """The fit settings the shipped default labeller was trained with."""
    model = load("default")
    rest = {k: v for k, v in model.meta["training"]["settings"].items() if k not in ("features", "context")}
    return FitSettings(features=model.features, context=model.context, **rest)


def conditional(model: LearnedLabeller, texts: tuple[str, ...]) -> np.ndarray:
    """(steps, previous signal or start, classes): the labeller's probabilities for every previous signal."""
    reader, prevs = model.read(list(texts)), [*model.classes, START]
    return np.stack([[reader.proba(i, START if i == 0 else p) for p in prevs] for i in range(len(texts))])


def decode(probs: list[np.ndarray], gold: list[tuple[Signal, ...]], classes: list[Signal], offset: float):
    """(judge label, label) of every step, read left to right with ``offset`` on Contrast's log-probability.
    At offset 0 this is the default policy at overrule 0: the labeller labels every step."""
    ci, start, pairs = classes.index(Signal.CONTRAST), len(classes), Counter()
    for P, truth in zip(probs, gold, strict=True):
        prev = start
        for i, t in enumerate(truth):
            lp = np.log(P[i, prev])
            lp[ci] += offset
            prev = int(lp.argmax())
            pairs[(t.key, classes[prev].key)] += 1
    return pairs


def contrast_recall(scores: dict) -> float:
    return scores["by_signal"]["contrast"]["accuracy"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--testbed", type=int, default=1000, help="scripted-teacher traces for the distant part")
    p.add_argument("--seed", type=int, default=1, help="their seed (1: the build script's)")
    p.add_argument("--folds", type=int, default=5)
    args = p.parse_args()
    judged = [q for q in judged_sequences(JUDGED) if not q.held_out]
    extra = distant_sequences(scripted_traces(args.testbed, args.seed), load_lexicon("extended"), "testbed")
    s = shipped_settings()
    groups = sorted({q.group for q in judged})
    fold = {g: k % args.folds for k, g in enumerate(groups)}  # as rscaffold.label.training.cross_validate
    print(f"{len(judged)} judged train traces, {sum(len(q.texts) for q in judged)} steps; settings c {s.c}, "
          f"contrast weight {s.contrast_weight}, next chars {s.context.next_chars}")  # fmt: skip
    print(f"{'share':>5} {'traces':>6} {'steps':>6} {'agree':>6} {'kappa':>6} {'contrast':>8} "
          f"{'best agree at contrast >= 0.8 (offset)':>40} {'seconds':>7}")  # fmt: skip
    points = []
    for frac in args.fractions:
        keep = {g for g in groups if zlib.crc32(g.encode()) % 1000 < frac * 1000}  # nested shares
        t0, probs, gold = time.perf_counter(), [], []
        for f in range(args.folds):
            model = fit_context([q for q in judged if fold[q.group] != f and q.group in keep] + extra, s)
            test = [q for q in judged if fold[q.group] == f]
            probs += [conditional(model, q.texts) for q in test]
            gold += [q.signals for q in test]
        by_offset = {float(o): judge_scores(decode(probs, gold, list(model.classes), float(o))) for o in OFFSETS}
        r = by_offset[0.0]
        reach = [(v["accuracy"], contrast_recall(v), o) for o, v in by_offset.items() if contrast_recall(v) >= 0.8]
        best = max(reach, default=(float("nan"),) * 3)
        traces = len(keep)
        points.append((traces, best[0]))
        steps = sum(len(q.texts) for q in judged if q.group in keep)
        recall = contrast_recall(r)
        print(f"{frac:>5.3g} {traces:>6} {steps:>6} {r['accuracy']:>6.3f} {r['kappa']:>6.3f} {recall:>8.3f} "
              f"{best[0]:>31.3f} ({best[1]:.3f}, {best[2]:+.2f}) {time.perf_counter() - t0:>7.0f}")  # fmt: skip
    if len(points) >= 2:
        x, y = np.log2([n for n, _ in points]), np.array([a for _, a in points])
        slope, icept = np.polyfit(x, y, 1)
        need = 2 ** ((JUDGE_TARGET["agreement"] - icept) / slope) if slope > 0 else float("inf")
        print(f"agreement at Contrast recall >= 0.8 grows {slope:+.3f} per doubling of the judged train traces; "
              f"on that line {JUDGE_TARGET['agreement']} needs about {need:,.0f} traces "
              f"({need / len(groups):.1f}x the {len(groups)} here; an extrapolation, not a measurement)")  # fmt: skip


if __name__ == "__main__":
    main()

"""How predictable the next signal is in each setting of the scripted teacher (experiments/TESTBED_SETTINGS.md).

    python bench/signal_predictability.py [--n 1000] [--seed 0] [--settings realistic clean informative]

For each setting, the teacher writes one trace for each of ``--n`` training problems (the same problems
in every setting, default testbed config), and the reference predictor (rscaffold.testbed.reference),
which sees only the question text and the steps so far, predicts every step's signal, the answer
step included. Printed per setting: next-signal accuracy of the predictor (argmax) and of the same
rules told the teacher's hidden plan; mean entropy in bits of the teacher's own distribution (given
its plan: its coin flips) and of the predictor's; the predictor's log loss (bits; equal to its entropy
when it is calibrated); the share of thinking steps whose signal follows from their first word (the
majority signal of each first word); then accuracy per true signal.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter, defaultdict

import numpy as np

from rscaffold.config import ScriptedConfig, TestbedConfig
from rscaffold.signals import Signal
from rscaffold.testbed.problems import make_splits
from rscaffold.testbed.reference import ReferencePredictor
from rscaffold.testbed.teacher import ScriptedTeacher

SETTINGS = ("realistic", "clean", "informative")


def bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def first_word(text: str) -> str:
    return re.sub(r"[^\w']", "", text.split(maxsplit=1)[0].lower()) if text.strip() else ""


def measure(setting: str, questions: list, seed: int) -> dict:
    """Every prediction of one setting: per step the true signal and the two distributions."""
    cfg = ScriptedConfig(setting=setting)
    teacher, predictor = ScriptedTeacher(cfg, seed), ReferencePredictor(cfg)
    rows, words = [], defaultdict(Counter)
    for q in questions:
        trace = teacher.trace(q)
        steps = [(s.true_signal, s.text) for s in trace.steps]
        guess = predictor.distributions(q.text, steps[:-1])
        told = predictor.distributions(q.text, steps[:-1], plan=teacher.plan(q))
        rows += [(sig, g, t) for (sig, _), g, t in zip(steps, guess, told, strict=True)]
        for sig, text in steps[:-1]:
            words[first_word(text)][sig] += 1
    truth = np.array([sig for sig, _, _ in rows])
    guess = np.stack([g for _, g, _ in rows])
    told = np.stack([t for _, _, t in rows])
    p_true = guess[np.arange(len(rows)), truth]
    return {
        "points": len(rows),
        "accuracy": float((guess.argmax(1) == truth).mean()),
        "accuracy_told_plan": float((told.argmax(1) == truth).mean()),
        "entropy_teacher": float(np.mean([bits(t) for t in told])),
        "entropy_predictor": float(np.mean([bits(g) for g in guess])),
        "log_loss": float(-np.log2(np.clip(p_true, 1e-12, None)).mean()) + 0.0,  # no "-0.000"
        "impossible": int((p_true == 0).sum()),
        "first_word": sum(max(c.values()) for c in words.values()) / sum(sum(c.values()) for c in words.values()),
        "per_signal": {
            s: (float((guess.argmax(1)[truth == s] == s).mean()), int((truth == s).sum()))
            for s in Signal
            if (truth == s).any()
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="traces per setting")
    p.add_argument("--seed", type=int, default=0, help="seed of the problems and of the teacher")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    args = p.parse_args()
    tb = TestbedConfig(train=args.n, test_id=0, test_ood=0, test_surface=0, perturbed_groups=0)
    questions = make_splits(tb, args.seed)["train"]
    results = {}
    for setting in args.settings:
        start = time.perf_counter()
        results[setting] = measure(setting, questions, args.seed)
        results[setting]["seconds"] = time.perf_counter() - start
    print(f"{args.n} traces per setting, seed {args.seed}, every step predicted (the answer step included)\n")
    print("| setting | predictions | accuracy | accuracy, plan told | H teacher (bits) | H predictor (bits) "
          "| log loss (bits) | zero-probability | first word | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for setting, r in results.items():
        print(f"| {setting} | {r['points']} | {r['accuracy']:.3f} | {r['accuracy_told_plan']:.3f} "
              f"| {r['entropy_teacher']:.3f} | {r['entropy_predictor']:.3f} | {r['log_loss']:.3f} "
              f"| {r['impossible']} | {r['first_word']:.3f} | {r['seconds']:.1f} |")  # fmt: skip
    print("\nAccuracy per true signal (steps):\n")
    print("| signal | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for s in Signal:
        cells = [
            f"{r['per_signal'][s][0]:.3f} ({r['per_signal'][s][1]})" if s in r["per_signal"] else "-"
            for r in results.values()
        ]
        print(f"| {s.title} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

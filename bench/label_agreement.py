"""Agreement of each labelling policy with the LLM judge on real thinking steps: share of steps labelled
as the judge did (an unlabelled step counts as a miss), Cohen's kappa, and Contrast recall, per trace
set and pooled, on the held-out part of the shipped judge-labelled steps
(`rscaffold/label/judge_labels/`, split by trace, never trained on).

    python bench/label_agreement.py [--shared ../shared/data] [--all]

``--all`` uses every judged step instead of the held-out part. Needs the traces of ``../shared/data``
(the judged steps name their traces; the texts are relabelled from there). Then the three judge runs
against each other, and last, for every judged step that opens with a paper keyword, the keyword's
Table 7 signal against the judge's labels.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from rscaffold.label.quality import JUDGED, against_reference, kappa, reference_labels

ROOT = Path(__file__).resolve().parents[1]
SETS = ("qwen3_thinking_traces", "thought_anchors_math", "thought_branches_faithfulness")
POLICIES = {
    "paper keywords": ["--policy", "keywords", "--lexicon", "paper"],
    "extended keywords": ["--policy", "keywords", "--lexicon", "extended"],
    "paper keywords + distant labeller (overrule 0.9)": ["--learned", "distant", "label.learned_overrule=0.9"],
    "default (paper keywords + context labeller)": [],
}
"""The distant labeller with overrule 0.9 was the default policy before the context labeller."""


def rscaffold(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "rscaffold.cli", *args], check=True, capture_output=True, text=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--all", action="store_true", help="every judged step, not only the held-out part")
    args = p.parse_args()
    reference = reference_labels(JUDGED, held_out=not args.all)
    tmp = Path(tempfile.mkdtemp(prefix="rscaffold-agreement-"))
    pooled: dict[str, Counter] = {name: Counter() for name in POLICIES}
    print(f"{'policy':<50} {'set':<30} {'steps':>5} {'labelled':>8} {'agree':>6} {'kappa':>6} {'contrast recall':>15}")
    for s in SETS:
        traces, segmented = tmp / f"{s}.traces.jsonl", tmp / f"{s}.segmented.jsonl"
        rscaffold("import", "--input", str(args.shared / "traces" / s / "traces.jsonl"), "--output", str(traces))
        rscaffold("segment", "--input", str(traces), "--output", str(segmented))
        for k, (name, options) in enumerate(POLICIES.items()):
            labelled = tmp / f"{s}.{k}.labelled.jsonl"
            rscaffold("label", "--input", str(segmented), "--output", str(labelled), *options)
            a = against_reference(labelled, reference)
            pooled[name].update({(r, c): n for r, c, n in a["pairs"]})
            print(f"{name:<50} {s:<30} {a['steps']:>5} {a['compared']:>8} {a['agreement']:>6.3f} {a['kappa']:>6.3f} "
                  f"{a['recall'].get('contrast', float('nan')):>15.3f}")  # fmt: skip
    for name, pairs in pooled.items():
        n = sum(pairs.values())
        labelled = sum(v for (_, b), v in pairs.items() if b != "none")
        agree = sum(v for (a, b), v in pairs.items() if a == b) / n
        contrast = pairs[("contrast", "contrast")] / max(1, sum(v for (a, _), v in pairs.items() if a == "contrast"))
        print(f"{name:<50} {'pooled':<30} {n:>5} {labelled:>8} {agree:>6.3f} {kappa(pairs):>6.3f} {contrast:>15.3f}")
    judge_runs(held_out=not args.all)
    keyword_table()


def judge_runs(held_out: bool) -> None:
    """How often the three independent judge runs agree with each other (each pair: agreement and kappa),
    and how many steps all three labelled alike: the ceiling a labeller of the judge's labels can expect."""
    import itertools
    import json

    rows = [json.loads(line) for line in JUDGED.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if not held_out or r["split"] == "held_out"]
    print(f"\njudge runs against each other ({len(rows)} steps; {'held-out' if held_out else 'all'})")
    for a, b in itertools.combinations(range(3), 2):
        pairs = Counter((r["votes"][a], r["votes"][b]) for r in rows)
        agree = sum(v for (x, y), v in pairs.items() if x == y) / len(rows)
        print(f"run {a + 1} vs run {b + 1}: agreement {agree:.3f}, kappa {kappa(pairs):.3f}")
    alike = sum(len(set(r["votes"])) == 1 for r in rows)
    print(f"all three alike: {alike} ({alike / len(rows):.3f}); the label is the majority of the three")


def keyword_table() -> None:
    """Each paper keyword that opens judged steps: its Table 7 signal against the judge's labels."""
    import json
    from collections import defaultdict

    from rscaffold.signals import Signal, load_lexicon

    lexicon = load_lexicon("paper")
    by: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for line in JUDGED.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if hit := lexicon.match(row["text"]):
            by[(hit[1], Signal(hit[0]).key)][row["signal"]] += 1
    print(f"\n{'opening keyword':<16} {'Table 7':<11} {'steps':>5}  judge's labels (agreement)")
    for (keyword, signal), c in sorted(by.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(c.values())
        top = ", ".join(f"{k} {v}" for k, v in c.most_common(3))
        print(f"{keyword:<16} {signal:<11} {n:>5}  {top} ({c[signal] / n:.2f})")


if __name__ == "__main__":
    main()

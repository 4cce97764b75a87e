"""`rscaffold evaluate`: a run folder of hand-made decoded files, and predictions from elsewhere."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rscaffold import evaluate
from rscaffold.cli import main
from rscaffold.config import Config, EvaluateConfig, TestbedConfig
from rscaffold.schema import Decoded, Question, Step, read_jsonl, write_jsonl
from rscaffold.testbed.problems import write_splits

GOLDEN = ["reasoning", "conclusion", "contrast", "conclusion", "response"]


def _decoded(q: Question, method: str, source: str, right: bool, rng: random.Random) -> Decoded:
    """A student output for a testbed question: right or wrong, with one stated value and one equation."""
    names = {x["id"]: x["name"] for x in q.metadata["quantities"]}
    target = names[q.metadata["target"]] if right else "Z"
    value = int(q.gold) if right else int(q.gold) + 1
    signals = GOLDEN if source == "golden" else [rng.choice(GOLDEN[:-1]) for _ in range(4)] + ["response"]
    texts = [f"Let me see, 2 + 3 = {5 if right else 6}.", f"So {target} = {value}.", "But wait.", "Thus done."]
    steps = [Step(text=t, signal=s, confidence=0.97) for t, s in zip(texts, signals[:-1], strict=True)]
    answer = f"So the answer follows.\n###Answer: \\boxed{{{value}}}"
    steps.append(Step(text=answer, signal="response", confidence=0.99))
    return Decoded(
        question_id=q.id, method=method, signal_source=source, benchmark="testbed", split=q.metadata["split"],
        question=q.text, gold=q.gold, steps=steps, answer_text=answer, tokens=40 + 10 * right,
        stop_reason="response", metadata={"golden_signals": GOLDEN},
    )  # fmt: skip


def make_run(tmp_path: Path, n: int = 60) -> Path:
    """A run folder: testbed splits, and decoded files for two methods on test_id and test_perturbed."""
    run = tmp_path / "run"
    cfg = TestbedConfig(train=5, test_id=n, test_ood=5, test_surface=5, perturbed_groups=10, perturbed_variants=3)
    write_splits(cfg, 0, run / "testbed")
    rng = random.Random(0)
    for split in ("test_id", "test_perturbed"):
        questions = list(read_jsonl(run / "testbed" / f"{split}.jsonl", Question))
        for method, source, share in (("scaffold", "golden", 0.75), ("cot-sft", "none", 0.25)):
            records = [_decoded(q, method, source, i < share * len(questions), rng) for i, q in enumerate(questions)]
            write_jsonl(run / "decoded" / f"{method}-s0__{source}__{split}.jsonl", records)
    return run


def test_run_folder_results(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    results = evaluate.run(Config(evaluate=EvaluateConfig(bootstrap_samples=200)), run)
    entries = {(e["method"], e["split"]): e for e in results["entries"]}
    assert len(entries) == 4
    e = entries["scaffold", "test_id"]
    p = e["pass@1_strict"]
    assert p["mean"] == 0.75 and p["lo"] < 0.75 < p["hi"] and p["n"] == 60
    assert e["pass@1_flexible"]["mean"] == 0.75 and e["extraction"] == {"name": "number", "version": "1"}
    assert e["tokens_per_answer"] == pytest.approx(0.75 * 50 + 0.25 * 40)
    assert sum(v["n"] for v in e["accuracy_by_ops"].values()) == 60
    c = e["consistency"]
    assert c["equations_right"] == 0.75
    assert c["conclusions_true"] == 1.0  # the wrong outputs name "Z", which is no quantity of the question
    sig = e["signals"]
    assert sig["next_signal"]["accuracy"] == 1.0 and sig["edit_distance"] == 0.0
    assert sig["transition_divergence"] == pytest.approx(0.0)
    assert entries["cot-sft", "test_id"]["signals"]["next_signal"]["accuracy"] < 1.0
    groups = entries["scaffold", "test_perturbed"]["consistency"]["groups"]
    assert groups["groups"] == 10 and 0 <= groups["same_outcome"] <= 1
    scored = [json.loads(line) for line in (run / "scored" / "scaffold-s0__golden__test_id.jsonl").open()]
    assert len(scored) == 60 and sum(r["correct"] for r in scored) == 45
    assert {"answer_strict", "answer_flexible", "correct_strict", "tokens"} <= set(scored[0])
    assert json.loads((run / "results.json").read_text())["entries"][0]["extraction"]["name"] == "number"


def _evaluate(*args: str) -> int:
    return main(["evaluate", *args])


def test_predictions_from_elsewhere(tmp_path: Path, capsys) -> None:
    preds = tmp_path / "preds.jsonl"
    rows = [
        {"id": "1", "prediction": "9 * 2 = 18\n#### 18", "gold": "18"},
        {"id": "2", "prediction": "The answer is 3.", "gold": "3", "question": "q"},
        {"id": "3", "prediction": "It is 70,000 dollars", "gold": "70000"},
        {"id": "4", "prediction": "#### 5", "gold": "6"},
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scored.jsonl"
    assert _evaluate("--benchmark", "gsm8k", "--predictions", str(preds), "--output", str(out)) == 0
    scored = [json.loads(line) for line in out.open()]
    assert [r["correct"] for r in scored] == [True, True, False, False]
    assert [r["correct_flexible"] for r in scored] == [True, True, True, False]
    assert scored[2]["answer_flexible"] == "70,000"
    summary = json.loads(capsys.readouterr().out)
    assert summary["pass@1_strict"]["mean"] == 0.5 and summary["pass@1_flexible"]["mean"] == 0.75


def test_bad_input_is_an_input_error(tmp_path: Path, capsys) -> None:
    preds, out = tmp_path / "preds.jsonl", tmp_path / "o.jsonl"
    preds.write_text(json.dumps({"id": "1", "prediction": "x", "gold": "1"}) + "\n" + json.dumps({"id": "2"}) + "\n")
    assert _evaluate("--benchmark", "gsm8k", "--predictions", str(preds), "--output", str(out)) == 2
    assert "preds.jsonl:2: field 'prediction' missing" in capsys.readouterr().err
    assert not out.exists()
    assert _evaluate("--benchmark", "nope", "--predictions", str(preds), "--output", str(out)) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert _evaluate("--run-dir", str(tmp_path)) == 2
    assert "no decoded files; run `rscaffold decode --run-dir" in capsys.readouterr().err
    assert _evaluate("--run-dir", str(tmp_path), "--predictions", str(preds)) == 2
    assert "cannot go with --run-dir" in capsys.readouterr().err


def test_decode_output_is_accepted_as_predictions(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path, n=20)
    decoded = run / "decoded" / "scaffold-s0__golden__test_id.jsonl"
    out = tmp_path / "scored.jsonl"
    assert _evaluate("--benchmark", "testbed", "--predictions", str(decoded), "--output", str(out)) == 0
    assert json.loads(capsys.readouterr().out)["pass@1_strict"]["mean"] == 0.75
    assert [r["id"] for r in map(json.loads, out.open())] == [d.question_id for d in read_jsonl(decoded, Decoded)]


def test_command_on_a_run_folder(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path, n=20)
    assert _evaluate("--run-dir", str(run)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("pass@1" in line for line in lines)
    assert len(list((run / "scored").glob("*.jsonl"))) == 4


def test_signal_adherence_on_a_constructed_case():
    """Four guided steps whose keyword labels are known: three follow the signal they were written
    under (contrast, reasoning, conclusion); the fourth, written under Contrast, opens with "So"."""
    from rscaffold.config import LabelConfig
    from rscaffold.evaluate import adherence_pairs
    from rscaffold.metrics import adherence
    from rscaffold.schema import Decoded, Step
    from rscaffold.signals import Signal

    texts = ["But wait, that is wrong.", "Let me compute 3 + 4.", "So the total is 7.", "So we get 9."]
    signals = [Signal.CONTRAST, Signal.REASONING, Signal.CONCLUSION, Signal.CONTRAST]
    steps = [Step(text=t, sep="\n\n", signal=s) for t, s in zip(texts, signals, strict=True)]
    d = Decoded(question_id="q", method="m", signal_source="golden", benchmark="testbed", split="test_id",
                question="Q?", gold="7", steps=steps, answer_text="###Answer: 7", tokens=9)  # fmt: skip
    pairs = adherence_pairs(d, LabelConfig(learned=None))  # paper keywords only: labels known
    assert pairs == [["contrast", "contrast"], ["reasoning", "reasoning"], ["conclusion", "conclusion"],
                     ["contrast", "conclusion"]]  # fmt: skip
    a = adherence(pairs)
    assert a["share"] == 0.75 and a["by_signal"] == {"conclusion": 1.0, "contrast": 0.5, "reasoning": 1.0}
    free = d.model_copy(update={"steps": [Step(text=t) for t in texts]})
    assert adherence_pairs(free) == []  # free decoding has no signals to follow


def test_swap_sensitivity_on_a_constructed_case():
    """Two rows swapped at step 1 to Contrast: one writes "But ..." there (follows the new signal), the
    other "So ..." (keeps a Conclusion): swap sensitivity 0.5."""
    from rscaffold.config import LabelConfig
    from rscaffold.evaluate import adherence_pairs, swapped_step
    from rscaffold.metrics import adherence
    from rscaffold.schema import Decoded, Step
    from rscaffold.signals import Signal

    def row(second: str) -> Decoded:
        texts = ["Let me compute 3 + 4.", second, "So the total is 7."]
        signals = [Signal.REASONING, Signal.CONTRAST, Signal.CONCLUSION]
        steps = [Step(text=t, sep="\n\n", signal=s) for t, s in zip(texts, signals, strict=True)]
        swap = {"step": 1, "signal": "contrast", "golden": "conclusion"}
        return Decoded(question_id="q", method="m", signal_source="golden-swap", benchmark="testbed", split="test_id",
                       question="Q?", gold="7", steps=steps, answer_text="###Answer: 7", tokens=9,
                       metadata={"swap": swap})  # fmt: skip

    keywords = LabelConfig(learned=None)
    swaps = [swapped_step(d, adherence_pairs(d, keywords)) for d in (row("But wait, 3 is wrong."), row("So it is 7."))]
    assert swaps == [["contrast", "contrast", "conclusion"], ["contrast", "conclusion", "conclusion"]]
    assert adherence([s[:2] for s in swaps])["share"] == 0.5
    short = row("But wait.").model_copy(update={"metadata": {"swap": {"step": 5, "signal": "contrast", "golden": "x"}}})
    assert swapped_step(short, adherence_pairs(short, keywords)) is None  # the row never wrote step 5

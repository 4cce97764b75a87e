"""Stage 4, training sets: what each set holds, what is dropped, and the files the stage writes."""

from __future__ import annotations

import json
from pathlib import Path

from rscaffold.build import build_folder, build_sets, format_prompt, pretrain_records
from rscaffold.config import BuildConfig, TestbedConfig
from rscaffold.schema import Step, Trace, write_jsonl
from rscaffold.signals import TITLES, Signal

OPENERS = {
    Signal.REASONING: "Let me see, {a} + {b} is {c}.",
    Signal.ADDITION: "Also, {c} is more than {a}.",
    Signal.EXAMPLE: "For example, {a} and {b} together.",
    Signal.OPINION: "I think {c} is right.",
    Signal.CONTRAST: "But {b} alone is not {c}.",
    Signal.CONCLUSION: "So the total is {c}.",
}


def make_traces(n: int, unlabelled_every: int = 0) -> list[Trace]:
    """Small labelled traces that use all seven signals (tests build their own data, offline)."""
    traces = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        signals = [*list(OPENERS)[i % 3 :], Signal.CONCLUSION]  # every third trace has all seven
        steps = [Step(text=OPENERS[s].format(a=a, b=b, c=a + b), sep="\n\n", signal=s, true_signal=s) for s in signals]
        if unlabelled_every and i % unlabelled_every == 0:
            steps[0] = steps[0].model_copy(update={"signal": None})
        steps[-1] = steps[-1].model_copy(update={"sep": ""})
        answer = f"{a} + {b} = {a + b}.\n###Answer: \\boxed{{{a + b}}}"
        steps.append(Step(text=answer, signal=Signal.RESPONSE, true_signal=Signal.RESPONSE))
        traces.append(
            Trace(
                question_id=f"q{i}",
                question=f"A has {a} apples. B has {b} apples. How many apples do they have together?",
                thinking="\n\n".join(s.text for s in steps[:-1]),
                answer_text=answer,
                final_answer=str(a + b),
                gold=str(a + b),
                steps=steps,
                metadata={"cot_solution": f"T = A + B = {a} + {b} = {a + b}\n###Answer: \\boxed{{{a + b}}}"},
            )
        )
    return traces


def test_proposer_records_keep_every_step_and_end_with_the_answer():
    trace = make_traces(1)[0]
    sets, counts = build_sets([trace], BuildConfig())
    (record,) = sets["proposer"]
    assert record["prompt"] == format_prompt(trace.question, BuildConfig())
    assert [s["signal"] for s in record["segments"]] == [int(s.signal) for s in trace.steps]
    assert record["segments"][-1] == {"text": trace.answer_text, "signal": int(Signal.RESPONSE)}
    # The thinking steps joined are the thinking text, each step ending in its blank line.
    assert "".join(s["text"] for s in record["segments"][:-1]) == trace.thinking + "\n\n"
    assert counts["traces"] == 1


def test_predictor_pairs_one_per_step_with_the_context_before_it():
    trace = make_traces(1)[0]
    sets, _ = build_sets([trace], BuildConfig())
    pairs = sets["predictor"]
    assert len(pairs) == len(trace.steps)
    assert pairs[0]["prompt"] == sets["proposer"][0]["prompt"] + "Next signal:"
    assert pairs[-1]["completion"] == f"\\boxed{{{TITLES[Signal.RESPONSE]}}}"
    assert pairs[2]["prompt"].endswith(trace.steps[1].text + "\n\nNext signal:")
    assert [p["signal"] for p in pairs] == [int(s.signal) for s in trace.steps]


def test_baselines_learn_what_the_teacher_wrote_and_the_oracle_is_apart():
    trace = make_traces(1)[0]
    sets, _ = build_sets([trace], BuildConfig())
    # CoT SFT learns the teacher's post-thinking answer, as from a real teacher; never the hidden solution.
    assert sets["cot"][0]["completion"] == trace.answer_text
    assert sets["oracle_cot"][0]["completion"] == trace.metadata["cot_solution"]
    assert sets["long"][0]["completion"] == trace.thinking + "\n\n" + trace.answer_text
    assert sets["answer"][0]["completion"] == f"###Answer: \\boxed{{{trace.final_answer}}}"


def test_long_thinking_sft_and_the_scaffold_learn_from_the_same_traces():
    traces = make_traces(6, unlabelled_every=2)
    sets, _ = build_sets(traces, BuildConfig(unlabelled="drop"))
    assert [r["id"] for r in sets["long"]] == [r["id"] for r in sets["proposer"]] == [r["id"] for r in sets["cot"]]
    for long, proposer in zip(sets["long"], sets["proposer"], strict=True):
        assert long["completion"] == "".join(s["text"] for s in proposer["segments"])


def test_pruned_contexts_keep_only_the_conclusions_of_finished_stages():
    trace = make_traces(1)[0]  # signals: R, A, E, O, C, Conclusion, then the answer
    steps = [s.model_copy(update={"signal": sig}) for s, sig in zip(trace.steps[:-1], [
        Signal.REASONING, Signal.CONCLUSION, Signal.ADDITION, Signal.CONCLUSION, Signal.REASONING, Signal.CONTRAST,
    ], strict=False)]  # fmt: skip
    trace = trace.model_copy(update={"steps": [*steps, trace.steps[-1]]})
    assert not build_sets([trace], BuildConfig())[0].get("proposer_pruned")
    sets, _ = build_sets([trace], BuildConfig(pruned_contexts=True))
    full, *stages = sets["proposer_pruned"]
    assert full == sets["proposer"][0]
    segs = full["segments"]
    # Stage 2 (after the first conclusion) and stage 3 (after the second, up to the answer).
    assert [r["prompt"] for r in stages] == [
        full["prompt"] + segs[1]["text"],
        full["prompt"] + segs[1]["text"] + segs[3]["text"],
    ]
    assert stages[0]["segments"] == segs[2:4] and stages[1]["segments"] == segs[4:]
    assert stages[1]["segments"][-1]["signal"] == int(Signal.RESPONSE)


def test_answer_tokens_measure_the_answers_with_a_tokenizer():
    from rscaffold.build import answer_texts, answer_tokens

    class Chars:
        def encode(self, text, add_special_tokens=False):
            return list(text)

    sets, _ = build_sets(make_traces(100), BuildConfig())
    lengths = sorted(len(t.answer_text) + 1 for t in make_traces(100))
    got = answer_tokens(answer_texts(sets["proposer"]), Chars())
    assert got["max"] == lengths[-1] and got["p50"] == lengths[50] and got["p99"] == lengths[99]
    assert answer_texts(sets["cot"]) == [t.answer_text for t in make_traces(100)]


def test_unlabelled_steps_get_the_fallback_or_drop_their_trace():
    traces = make_traces(4, unlabelled_every=2)
    sets, counts = build_sets(traces, BuildConfig())
    assert len(sets["proposer"]) == 4 and counts["steps_unlabelled"] == 2
    assert sets["proposer"][0]["segments"][0]["signal"] == int(Signal.REASONING)
    sets, counts = build_sets(traces, BuildConfig(unlabelled="drop"))
    assert len(sets["proposer"]) == 2 and counts["dropped_unlabelled"] == 2
    sets, _ = build_sets(traces, BuildConfig(signal_source="true"))
    assert sets["proposer"][0]["segments"][0]["signal"] == int(traces[0].steps[0].true_signal)


def test_run_writes_every_set_and_stats(tmp_path: Path):
    write_jsonl(tmp_path / "labelled.jsonl", make_traces(5))
    stats = build_folder(tmp_path / "labelled.jsonl", tmp_path / "build", BuildConfig())
    for name in ("proposer", "predictor", "cot", "long", "answer"):
        lines = (tmp_path / "build" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == stats["sets"][name]["records"] > 0
    saved = json.loads((tmp_path / "build" / "stats.json").read_text())
    assert saved["sets"]["proposer"]["steps"] == sum(len(t.steps) for t in make_traces(5))
    assert saved["prompt_template"] == BuildConfig().prompt_template
    assert not (tmp_path / "build" / "pretrain.jsonl").exists()


def test_pretrain_set_has_lookups_in_every_format_expressions_and_drills_but_no_test_question(tmp_path: Path):
    import re

    from rscaffold.build import LOOKUP_FORMATS
    from rscaffold.testbed.problems import make_splits

    small = TestbedConfig(train=60, test_id=10, test_ood=0, test_surface=0, perturbed_groups=0)
    run_dir = tmp_path / "run"
    write_jsonl(run_dir / "labelled.jsonl", make_traces(2))
    test = make_splits(small, 1000)["test_id"]  # the very seed pretraining draws from
    write_jsonl(run_dir / "testbed" / "test_id.jsonl", test)
    cfg = BuildConfig(pretrain_questions=60, pretrain_drills=5)
    build_folder(run_dir / "labelled.jsonl", run_dir / "build", cfg, small, seed=0)
    docs = [json.loads(line)["completion"] for line in (run_dir / "build" / "pretrain.jsonl").read_text().splitlines()]
    assert sum(d[0].isdigit() and len(d.splitlines()) == 8 for d in docs) == 5  # the drill documents
    questions = {q.text: q for q in make_splits(small.model_copy(update={"test_id": 0}), 1000)["train"]}
    shapes = {
        name: re.compile("^" + re.escape(t).replace(r"\{n\}", r"\w+").replace(r"\{m\}", r"\w+")
                         .replace(r"\{v\}", r"\d+").replace(r"\{w\}", r"\d+") + "$")
        for name, t in LOOKUP_FORMATS.items()
    }  # fmt: skip
    seen = dict.fromkeys(LOOKUP_FORMATS, 0)
    for doc in docs:
        text, *lines = doc.split("\n")
        assert text not in {q.text for q in test}
        if text not in questions:
            continue
        values = questions[text].metadata["values"]
        given = {d["name"] for d in questions[text].metadata["quantities"] if d["op"] == "given"}
        for line in lines:
            # Every stated value is a given fact's, never a derived one.
            for name, number in re.findall(r"\b([A-Za-z]\w*) (?:has|=) (\d+)(?= and|,|$)", line):
                assert name in given and int(number) == values[name], line
            fmt = next((f for f, shape in shapes.items() if shape.match(line)), None)
            if fmt is not None:
                seen[fmt] += 1
                continue
            names, numbers, result = line.split(", so ")[-1].split(" = ")  # an expression over given facts
            assert eval(numbers.replace("/", "//")) == int(result) >= 0
            for name, number in zip(names.split()[::2], numbers.split()[::2], strict=True):
                assert number == (str(values[name]) if name in values else name)
    assert min(seen.values()) >= 15, seen  # each format about a quarter of the look-ups


def test_pretrain_drills_are_correct():
    for doc in pretrain_records([], drills=20, seed=3):
        for line in doc["completion"].splitlines():
            expr, value = line.split(" = ")
            assert eval(expr.replace("/", "//")) == int(value)


def test_build_command_reads_and_writes_the_run_folder(tmp_path: Path, capsys):
    from rscaffold.cli import main

    write_jsonl(tmp_path / "labelled.jsonl", make_traces(3))
    assert main(["build", "--run-dir", str(tmp_path), "--signal-source", "true", "model.base=testbed"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["proposer"] == 3
    assert json.loads((tmp_path / "build" / "stats.json").read_text())["answer_tokens"]["p99"] > 0
    assert main(["build", "--run-dir", str(tmp_path / "none")]) == 2
    assert f"run `rscaffold label --run-dir {tmp_path / 'none'}` first" in capsys.readouterr().err

"""Labelling stage 2: the judge prompt, strict parsing, retries on invalid answers, overruling, the report."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rscaffold import label, segment
from rscaffold.config import FaultConfig, ScriptedConfig, ServeConfig, TestbedConfig
from rscaffold.label.judge import (
    JudgeConfig,
    judge_messages,
    judge_traces,
    load_judge_config,
    parse_judge_answer,
    step_of_prompt,
)
from rscaffold.schema import InputError, Trace, write_jsonl
from rscaffold.serve import serve_in_thread
from rscaffold.signals import Signal, load_lexicon
from rscaffold.testbed.problems import make_splits
from rscaffold.testbed.teacher import ScriptedTeacher


@pytest.mark.parametrize(
    ("answer", "signal"),
    [
        ("\\boxed{Conclusion and Summary}", Signal.CONCLUSION),
        ("The signal is \\boxed{ conclusion  AND summary }.", Signal.CONCLUSION),
        ("**\\boxed{\\text{Contrast \\& Concession}}**", Signal.CONTRAST),
        ("\\boxed{Examples & Illustration}", Signal.EXAMPLE),
        ("\\boxed{personal_opinion_and_recall}", Signal.OPINION),
        ("first \\boxed{Addition and Elaboration}, no: \\boxed{Reasoning and Analysis}", Signal.REASONING),
        ("\\boxed{reasoning}", Signal.REASONING),
    ],
)
def test_parse_maps_case_spacing_and_key_variants(answer, signal):
    assert parse_judge_answer(answer) is signal


@pytest.mark.parametrize(
    "answer", ["Conclusion and Summary", "\\boxed{Response Generation}", "\\boxed{Banana}", "\\boxed{}", ""]
)
def test_parse_rejects_anything_else(answer):
    assert parse_judge_answer(answer) is None


def test_prompt_holds_context_step_and_the_six_definitions():
    text = judge_messages("judge-v1", "Q?", "Before.\n\n", "Wait, 5 + 3 is 8.")[0]["content"]
    assert step_of_prompt(text) == "Wait, 5 + 3 is 8." and "Before." in text and "\\boxed{name}" in text
    assert text.count("\n- ") == 6 and "Response Generation" not in text


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Trace]]:
    questions = make_splits(TestbedConfig(), 0)["train"][:25]
    path = tmp_path_factory.mktemp("judge") / "questions.jsonl"
    write_jsonl(path, questions)
    traces = ScriptedTeacher(ScriptedConfig(), 0).generate(questions)
    return path, list(label.label_keywords(segment.segment_traces(traces), load_lexicon("paper")))


def _judge(url: str, cache: Path, traces: list[Trace], **kw) -> tuple[list[Trace], dict]:
    report: dict = {}
    cfg = JudgeConfig(base_url=url, cache=str(cache), backoff_base_s=0.01, **kw)
    return list(judge_traces(traces, cfg, report)), report


def test_judge_end_to_end_retries_invalid_overrules_and_labels_the_rest(labelled, tmp_path):
    path, traces = labelled
    faults = FaultConfig(judge_invalid_share=0.3, share_500=0.05)
    with serve_in_thread(ServeConfig(port=0, questions=str(path), faults=faults)) as url:
        judged, report = _judge(url, tmp_path / "c.sqlite", traces)
        received = httpx.get(f"{url}/_stats").json()["received"]
        again, _ = _judge(url, tmp_path / "c.sqlite", traces)
        assert httpx.get(f"{url}/_stats").json()["received"] == received, "a cached rerun sends no request"
    assert [t.question_id for t in judged] == [t.question_id for t in traces] and again == judged
    steps = [s for t in judged for s in t.steps if s.signal is not Signal.RESPONSE]
    assert all(s.signal is s.true_signal for s in steps), "the scripted judge answers the true signal"
    assert report["invalid_answers"] > 0 and report.get("unresolved", 0) == 0
    assert report["labelled_new"] == sum(s.signal is None for t in traces for s in t.steps)
    assert report["overruled"] == sum(s.labelled_by == "judge" for s in steps) - report["labelled_new"]
    kw = [s for t in traces for s in t.steps if s.labelled_by == "keyword"]
    assert report["keyword_agreement"] == pytest.approx(sum(s.signal is s.true_signal for s in kw) / len(kw), abs=1e-3)
    assert (
        set(report["keyword_agreement_by_signal"]) <= {s.key for s in Signal} and report["judge_accuracy_vs_truth"] == 1
    )


def test_unresolved_steps_keep_their_keyword_label(labelled, tmp_path):
    path, traces = labelled
    faults = FaultConfig(judge_invalid_share=1.0)
    with serve_in_thread(ServeConfig(port=0, questions=str(path), faults=faults)) as url:
        judged, report = _judge(url, tmp_path / "c.sqlite", traces[:3], max_invalid_tries=1)
    assert judged == traces[:3] and report["unresolved"] == report["steps"] > 0


def test_only_unlabelled_judges_steps_without_keyword(labelled, tmp_path):
    path, traces = labelled
    with serve_in_thread(ServeConfig(port=0, questions=str(path))) as url:
        judged, report = _judge(url, tmp_path / "c.sqlite", traces[:5], only_unlabelled=True)
    assert report["steps"] == sum(s.signal is None for t in traces[:5] for s in t.steps)
    assert report["keyword_agreement"] is None and all(s.signal is not None for t in judged for s in t.steps)


def test_load_judge_config(tmp_path):
    (tmp_path / "j.yaml").write_text("judge:\n  model: gpt-4.1\n  max_concurrency: 4\n")
    assert load_judge_config(tmp_path / "j.yaml").model == "gpt-4.1"
    (tmp_path / "bad.yaml").write_text("max_invalid_tries: 0\n")
    with pytest.raises(InputError, match="max_invalid_tries"):
        load_judge_config(tmp_path / "bad.yaml")

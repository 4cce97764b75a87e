from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rscaffold.config import ImportConfig, load_config
from rscaffold.import_traces import read_traces, split_think
from rscaffold.schema import InputError
from tests.conftest import TRACE_SETS


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_shared_schema(tmp_path):
    rec = {
        "id": "x1",
        "model": "R1",
        "question": "Q?",
        "trace": "Okay.\n\nSo 2.",
        "answer_text": "2",
        "final_answer": "2",
        "gold_answer": 2,
        "truncated": False,
        "source": "s",
    }
    (trace,) = read_traces(write(tmp_path / "a.jsonl", [rec]), ImportConfig())
    assert (trace.question_id, trace.teacher, trace.thinking, trace.answer_text, trace.gold) == (
        "x1",
        "R1",
        "Okay.\n\nSo 2.",
        "2",
        "2",
    )
    assert trace.metadata == {"source": "s", "truncated": False}


def test_think_block_in_one_field(tmp_path):
    recs = [
        {"prompt": "Q?", "text": "<think>\nHmm.\n\nSo 1.\n</think>\n\nThe answer is 1."},
        {"prompt": "Q2?", "text": "Hmm, no closing tag"[:0] + "<think>cut off"},
    ]
    a, b = read_traces(write(tmp_path / "b.jsonl", recs), ImportConfig())
    assert (a.question, a.thinking, a.answer_text, a.metadata["truncated"]) == (
        "Q?",
        "\nHmm.\n\nSo 1.\n",
        "\n\nThe answer is 1.",
        False,
    )
    assert (b.thinking, b.answer_text, b.metadata["truncated"], b.question_id) == ("cut off", "", True, "b-2")


def test_split_reasoning_fields_and_dotted_names(tmp_path):
    recs = [{"id": 5, "q": "Q?", "choices": [{"message": {"reasoning_content": "Wait.", "content": "A"}}]}]
    cfg = load_config(
        None,
        [
            "import.fields.thinking=choices.0.message.reasoning_content",
            "import.fields.answer=choices.0.message.content",
            "import.fields.question=q",
            "import.teacher=deepseek-reasoner",
        ],
    ).import_
    (t,) = read_traces(write(tmp_path / "c.jsonl", recs), cfg)
    assert (t.question_id, t.question, t.thinking, t.answer_text, t.teacher) == (
        "5",
        "Q?",
        "Wait.",
        "A",
        "deepseek-reasoner",
    )
    (t2,) = read_traces(write(tmp_path / "d.jsonl", [{"reasoning_content": "Hmm.", "content": "B"}]), ImportConfig())
    assert (t2.thinking, t2.answer_text) == ("Hmm.", "B")


def test_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "p", "trace": "So.", "answer_text": "1"}] * 3), path)
    traces = list(read_traces(path, ImportConfig()))
    assert len(traces) == 3 and traces[0].thinking == "So."


def test_split_think_without_opening_tag():
    assert split_think("Hmm.\n</think>Yes") == ("Hmm.\n", "Yes", False)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"trace": 3}, "a.jsonl:1: field 'trace': expected a string, got int"),
        ({"text": "no think block here"}, "a.jsonl:1: field 'text': no <think> block"),
        ({"question": "Q"}, "a.jsonl:1: missing field"),
    ],
)
def test_bad_records(tmp_path, record, message):
    with pytest.raises(InputError, match=message):
        list(read_traces(write(tmp_path / "a.jsonl", [record]), ImportConfig()))


@pytest.mark.parametrize("name", TRACE_SETS)
def test_each_shared_trace_set_imports(shared_traces, name):
    path = shared_traces / name / "traces.jsonl"
    traces = list(read_traces(path, ImportConfig()))
    raw = [json.loads(line) for line in path.open()]
    assert len(traces) == len(raw)
    assert all(t.thinking == r["trace"] and t.question_id == r["id"] for t, r in zip(traces, raw, strict=True))
    assert all(t.teacher == r["model"] for t, r in zip(traces, raw, strict=True))

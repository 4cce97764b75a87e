from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rscaffold.config import ImportConfig, load_config
from rscaffold.import_traces import is_hub_id, read_traces, run_file, split_think
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


def shared_rows(n: int) -> list[dict]:
    return [{"id": f"d{i}", "model": "R1", "question": "Q?", "trace": f"Okay.\n\nSo {i}.", "answer_text": str(i)}
            for i in range(n)]  # fmt: skip


def test_a_datasets_folder_reads_as_its_jsonl_would(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = shared_rows(3)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    from_folder = list(read_traces(tmp_path / "ds", ImportConfig()))
    assert from_folder == list(read_traces(write(tmp_path / "a.jsonl", rows), ImportConfig()))
    assert [t.question_id for t in from_folder] == ["d0", "d1", "d2"] and from_folder[2].answer_text == "2"
    summary = run_file(load_config(None, []), tmp_path / "ds", tmp_path / "traces.jsonl")
    assert summary == {"traces": 3} and (tmp_path / "traces.jsonl").read_text().count("\n") == 3


def test_a_dataset_dict_gives_the_chosen_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "ds"
    splits = {"train": datasets.Dataset.from_list(shared_rows(2)), "test": datasets.Dataset.from_list(shared_rows(1))}
    datasets.DatasetDict(splits).save_to_disk(str(path))
    assert [t.question_id for t in read_traces(path, ImportConfig(), "test")] == ["d0"]
    with pytest.raises(InputError, match=r"splits train, test: choose one \(--split NAME, or import.split"):
        list(read_traces(path, ImportConfig()))
    with pytest.raises(InputError, match=r"ds: no split 'dev'; its splits: train, test"):
        list(read_traces(path, ImportConfig(), "dev"))
    datasets.DatasetDict({"train": splits["train"]}).save_to_disk(str(tmp_path / "one"))
    assert len(list(read_traces(tmp_path / "one", ImportConfig()))) == 2  # one split: no need to name it


def test_a_bad_dataset_row_is_named_by_folder_split_row_and_field(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"id": "a", "trace": "So."}, {"id": "b", "trace": None}]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(InputError, match=r"ds\[test\]:row 2: missing field: expected one of 'text'"):
        list(read_traces(tmp_path / "ds", ImportConfig(), "test"))
    datasets.Dataset.from_list([{"trace": 3}]).save_to_disk(str(tmp_path / "ints"))
    with pytest.raises(InputError, match=r"ints:row 1: field 'trace': expected a string, got int"):
        list(read_traces(tmp_path / "ints", ImportConfig()))
    with pytest.raises(InputError, match=r"ints: holds one Dataset, not a DatasetDict"):
        list(read_traces(tmp_path / "ints", ImportConfig(), "train"))


def test_folders_and_files_that_are_not_datasets(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="plain: a folder, but not one written by datasets' save_to_disk"):
        list(read_traces(tmp_path / "plain", ImportConfig()))
    with pytest.raises(InputError, match=r"a split \('train'\) goes with a datasets folder or a hub id, not a file"):
        list(read_traces(write(tmp_path / "a.jsonl", shared_rows(1)), ImportConfig(), "train"))


def test_a_hub_id_offline_is_one_clear_error_and_a_mistyped_path_never_asks_the_hub(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        InputError, match=r"^owner/name: cannot load this dataset from the Hugging Face hub \(Connection"
    ):
        list(read_traces("owner/name", ImportConfig(), "train"))
    assert is_hub_id("openai/gsm8k") and not is_hub_id("nowhere/traces.jsonl") and not is_hub_id(tmp_path)
    with pytest.raises(InputError, match=r"nowhere/traces\.jsonl: not found"):
        run_file(load_config(None, []), Path("nowhere/traces.jsonl"), tmp_path / "out.jsonl")

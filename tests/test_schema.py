from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rscaffold.schema import InputError, Question, Step, Trace, atomic_writer, read_jsonl, write_jsonl
from rscaffold.signals import Signal


def _trace() -> Trace:
    steps = [
        Step(text="Okay, so.", sep="\n\n", signal=Signal.REASONING, labelled_by="keyword"),
        Step(text="So 3.", signal=Signal.CONCLUSION, labelled_by="truth", true_signal=Signal.CONCLUSION),
        Step(text="###Answer: \\boxed{3}", signal=Signal.RESPONSE, labelled_by="structure", confidence=1.0),
    ]
    return Trace(question_id="q1", question="1+2?", thinking="Okay, so.\n\nSo 3.", steps=steps, metadata={"a": [1]})


def test_records_round_trip(tmp_path):
    path = tmp_path / "t.jsonl"
    questions = [Question(id="a", text="x?", gold="1", task="testbed", metadata={"ops": 2}), Question(id="b", text="y")]
    assert write_jsonl(path, [_trace(), _trace()]) == 2
    assert list(read_jsonl(path, Trace)) == [_trace(), _trace()]
    write_jsonl(tmp_path / "q.jsonl", questions)
    assert list(read_jsonl(tmp_path / "q.jsonl", Question)) == questions


def test_signals_are_written_by_key(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [_trace()])
    steps = json.loads(path.read_text())["steps"]
    assert [s["signal"] for s in steps] == ["reasoning", "conclusion", "response"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"question_id": "a", "thinking": "x"', "t.jsonl:2: invalid JSON"),
        ('{"question_id": 3, "thinking": "x"}', "t.jsonl:2: field 'question_id'"),
        ('{"question_id": "a"}', "t.jsonl:2: field 'thinking': Field required"),
        (
            '{"question_id": "a", "thinking": "x", "steps": [{"text": "s", "signal": "maybe"}]}',
            "field 'steps.0.signal'",
        ),
        ('{"question_id": "a", "thinking": "x", "colour": 1}', "field 'colour': Extra inputs"),
    ],
)
def test_bad_line_names_file_line_and_field(tmp_path, line, expected):
    path = tmp_path / "t.jsonl"
    path.write_text('{"question_id": "ok", "thinking": "fine"}\n' + line + "\n")
    with pytest.raises(InputError, match=expected.replace("(", r"\(")) as e:
        list(read_jsonl(path, Trace))
    assert "\n" not in str(e.value)


def test_non_utf8_and_empty(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"question_id": "a", "thinking": "\xff"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: not valid UTF-8 \(byte 0xff"):
        list(read_jsonl(bad, Trace))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="file is empty"):
        list(read_jsonl(empty, Trace))


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"

    def records():
        yield _trace()
        raise RuntimeError("crash mid-stream")

    with pytest.raises(RuntimeError):
        write_jsonl(path, records())
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = """
import sys, time
from rscaffold.schema import atomic_writer
with atomic_writer(sys.argv[1]) as f:
    f.write("x")
    print("ready", flush=True)
    time.sleep(60)
"""


def test_temp_files_of_a_killed_writer_are_removed_when_the_output_is_next_written(tmp_path):
    """A writer killed with SIGKILL cannot clean up; the next writer of the same output does, and leaves
    the temporary files of live writers and of other outputs alone."""
    path = tmp_path / "out.jsonl"
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-c", KILLED_WRITER, str(path)]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(f".out.jsonl.{proc.pid}.")
    live = tmp_path / ".out.jsonl.1.abc123.tmp"  # pid 1 always runs
    other = tmp_path / f".other.jsonl.{proc.pid}.abc123.tmp"
    live.write_text("")
    other.write_text("")
    write_jsonl(path, [_trace()])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "out.jsonl"])


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], ids=["022", "002", "077"])
def test_output_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_jsonl(tmp_path / "t.jsonl", [_trace()])
        with atomic_writer(tmp_path / "b.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "t.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def test_folder_or_path_under_a_file_is_an_input_error(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(InputError, match=r"folder: is a folder; give the path of a file"):
        write_jsonl(tmp_path / "folder", [_trace()])
    with pytest.raises(InputError, match=r"out.jsonl: cannot write there \(.*file.txt is a file, not a folder\)"):
        write_jsonl(tmp_path / "file.txt" / "sub" / "out.jsonl", [_trace()])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]
    assert list((tmp_path / "folder").iterdir()) == []

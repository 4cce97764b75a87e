from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rscaffold.cli import main
from rscaffold.config import STAGES

SHARED_RECORD = {
    "source": "s",
    "model": "R1",
    "benchmark": "b",
    "id": "r1",
    "question": "2+2?",
    "trace": "Okay, 2+2.\n\nSo it is 4.\n\nHmm, yes.",
    "answer_text": "###Answer: \\boxed{4}",
    "final_answer": "4",
    "gold_answer": "4",
    "is_correct": True,
    "truncated": False,
    "original": {},
}


def test_help_lists_every_stage():
    out = subprocess.run(
        [sys.executable, "-m", "rscaffold.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for stage in [*STAGES, "run", "demo"]:
        assert stage in out


def pipeline(tmp_path, source, capsys, lexicon="paper", policy="keywords"):
    assert main(["import", "--input", str(source), "--output", str(tmp_path / "t.jsonl")]) == 0
    assert main(["segment", "--input", str(tmp_path / "t.jsonl"), "--output", str(tmp_path / "s.jsonl")]) == 0
    assert (
        main(
            [
                "label",
                "--policy",
                policy,
                "--lexicon",
                lexicon,
                "--input",
                str(tmp_path / "s.jsonl"),
                "--output",
                str(tmp_path / "l.jsonl"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "l.jsonl"), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_import_segment_label_stats(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(SHARED_RECORD) + "\n")
    stats = pipeline(tmp_path, source, capsys)
    assert stats["traces"] == 1 and stats["steps"] == 4
    assert stats["keyword_coverage"] == pytest.approx(1 / 3, abs=1e-3)  # only "So" is a paper keyword
    assert stats["signal_distribution"]["conclusion"] == 0.25
    assert pipeline(tmp_path, source, capsys, "extended")["keyword_coverage"] == 1.0
    full = pipeline(tmp_path, source, capsys, policy="learned")  # keywords, then the shipped labeller
    assert full["label_coverage"] == 1.0 and full["labelled_by"]["learned"] == 2


def test_run_dir_chain_records_config_and_versions(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(SHARED_RECORD) + "\n")
    run = tmp_path / "run"
    assert main(["import", "--run-dir", str(run), f"import.path={source}"]) == 0
    for stage in ["segment", "label", "stats"]:
        assert main([stage, "--run-dir", str(run)]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["stages"]] == ["import", "segment", "label", "stats"]
    assert manifest["versions"]["pydantic"] and "git_sha" in manifest
    assert "lexicon: paper" in (run / "config.yaml").read_text()
    assert json.loads((run / "stats.json").read_text())["traces"] == 1


def test_stage_before_its_input_exists(tmp_path, capsys):
    assert main(["label", "--run-dir", str(tmp_path)]) == 2
    assert "segmented.jsonl: not found; run `rscaffold segment" in capsys.readouterr().err


TRUNCATED = '{"question_id": "a", "thinking": "x"'
BAD_INPUTS = {
    "truncated": (TRUNCATED, "bad.jsonl:2: invalid JSON"),
    "wrong type": ('{"question_id": ["a"], "thinking": "x"}', "bad.jsonl:2: field 'question_id'"),
    "missing field": ('{"question_id": "a"}', "bad.jsonl:2: field 'thinking': Field required"),
    "non-utf8": (b'{"question_id": "a", "thinking": "\xc3\x28"}', "bad.jsonl:2: not valid UTF-8"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("stage", ["segment", "label"])
def test_malformed_input_exits_2_with_no_output(tmp_path, capsys, case, stage):
    line, message = BAD_INPUTS[case]
    good = b'{"question_id": "ok", "thinking": "fine"}\n'
    (tmp_path / "bad.jsonl").write_bytes(good + (line if isinstance(line, bytes) else line.encode()) + b"\n")
    out = tmp_path / "out.jsonl"
    assert main([stage, "--input", str(tmp_path / "bad.jsonl"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_empty_file_and_huge_line(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["segment", "--input", str(tmp_path / "empty.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "file is empty" in capsys.readouterr().err
    (tmp_path / "huge.jsonl").write_text('{"question_id": "a", "thinking": "' + "x" * 50_000_000 + "\n")
    assert main(["import", "--input", str(tmp_path / "huge.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "huge.jsonl:1: invalid JSON" in err and len(err) < 300
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_io_options(capsys):
    assert main(["segment"]) == 2
    assert "give --input FILE --output FILE, or --run-dir DIR" in capsys.readouterr().err


def test_bad_override_on_command_line(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "x.jsonl"), "label.lexicn=paper"]) == 2
    assert "did you mean 'label.lexicon'" in capsys.readouterr().err


def test_shared_trace_file_end_to_end(tmp_path, capsys, shared_traces):
    stats = pipeline(tmp_path, shared_traces / "thought_anchors_math" / "traces.jsonl", capsys)
    assert stats["traces"] == 40
    assert 0.3 < stats["keyword_coverage"] < 0.74  # well below the paper's claimed 0.74


def test_testbed_and_scripted_teacher_through_the_cli(tmp_path, capsys):
    sizes = [
        "testbed.train=60",
        "testbed.test_id=10",
        "testbed.test_ood=10",
        "testbed.test_surface=10",
        "testbed.perturbed_groups=2",
    ]
    out = tmp_path / "tb"
    assert main(["testbed", "make", "--out", str(out), "--seed", "3", *sizes]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"{s}.jsonl" for s in ["test_id", "test_ood", "test_perturbed", "test_surface", "train"]
    ]
    capsys.readouterr()
    traces = tmp_path / "traces.jsonl"
    args = ["generate", "--teacher", "scripted", "--input", str(out / "train.jsonl"), "--output", str(traces)]
    assert main([*args, "generate.filter_wrong=false"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == 60
    assert main(args) == 0
    kept = json.loads(capsys.readouterr().out)["kept"]
    assert 40 <= kept < 60  # the configured wrong share (0.1) is dropped


def test_run_command_chains_the_testbed_pipeline(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "testbed:\n  train: 80\n  test_id: 10\n  test_ood: 10\n  test_surface: 10\n  perturbed_groups: 2\n"
        "run:\n  stages: [testbed, generate, segment, label, stats]\n"
    )
    assert main(["run", "--config", str(config), "--run-dir", str(tmp_path / "r")]) == 0
    assert "against true signals" in capsys.readouterr().out
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert stats["truth"]["accuracy_on_labelled"] > 0.8
    assert 0.6 < stats["keyword_coverage"] < 0.9


def test_overrides_and_flags_mix_in_any_order(tmp_path, capsys):
    out = tmp_path / "tb"
    args = ["testbed", "testbed.train=5", "--output", str(out), "testbed.test_id=3", "--seed", "2"]
    assert main(args) == 2  # a config error, named by its key
    assert "perturbed_groups: 100 exceeds test_id (3)" in capsys.readouterr().err
    assert main([*args, "testbed.perturbed_groups=1"]) == 0
    assert len((out / "test_id.jsonl").read_text().splitlines()) == 3
    with pytest.raises(SystemExit) as exit_:  # an unknown flag is still an error
        main(["testbed", "testbed.train=5", "--bogus"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_input_with_run_dir_is_an_error(tmp_path, capsys):
    assert main(["segment", "--run-dir", str(tmp_path), "--input", str(tmp_path / "x.jsonl")]) == 2
    assert "--input cannot go with --run-dir" in capsys.readouterr().err


def test_every_suggested_command_parses(tmp_path, capsys):
    """The commands that error messages suggest (`run ... first`) are commands the parser accepts."""
    import re

    from rscaffold.cli import parse

    for stage in ["label", "stats", "build", "train", "decode", "evaluate"]:
        main([stage, "--run-dir", str(tmp_path / "empty")])
        for suggested in re.findall(r"`(rscaffold [^`]+)`", capsys.readouterr().err):
            parse(suggested.split()[1:])  # exits (SystemExit) if the parser rejects it


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_output_that_cannot_be_written_exits_2_with_one_line(tmp_path, capsys, where):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"question_id": "a", "thinking": "x\n\ny"}) + "\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("")
    out = tmp_path / "folder" if where == "a folder" else tmp_path / "file.txt" / "out.jsonl"
    assert main(["segment", "--input", str(source), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rscaffold: error: {out}: ") and err.count("\n") == 1, err
    assert "is a folder" in err if where == "a folder" else "file.txt is a file, not a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder", "in.jsonl"]


def test_a_closed_pipe_on_stdout_exits_quietly(tmp_path, capsys):
    """``rscaffold label-report FILE | head -1``: the reader goes away before the report is written."""
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(SHARED_RECORD) + "\n")
    pipeline(tmp_path, source, capsys)
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `head` does once it has its line; every write then fails with EPIPE
    cmd = [sys.executable, "-m", "rscaffold.cli", "label-report", str(tmp_path / "l.jsonl")]
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(cmd, cwd=root, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == "", done.stderr

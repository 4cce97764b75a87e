"""The grid's table, differences and figure from run folders whose scored files are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rscaffold import grid, runs
from rscaffold.cli import main
from rscaffold.config import Config, load_config, shipped_config


def cfg_for(settings: list[str]) -> Config:
    return Config.model_validate(
        {
            "experiment": {"seeds": [0, 1], "splits": ["test_id", "test_ood"]},
            "grid": {"settings": settings, "positions": ["output", "input"], "predictability_traces": 0},
        }
    )


def write_scored(run: Path, row: str, seed: int, split: str, correct: list[bool]) -> None:
    student, _, variant = row.partition("__")
    path = runs.scored(run, runs.Decoding(student, seed, variant, split))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"q{i}", "correct": c}) + "\n" for i, c in enumerate(correct)))


def fake_grid(root: Path, cfg: Config) -> None:
    """Setting 'clean': every row right on question q0 only of 4, except output__golden (all right) and
    cot-sft (none); the golden rows' adherence 0.5 (output) and 1.0 (input)."""
    run = root / "clean"
    for row in grid.rows(cfg):
        for seed in (0, 1):
            for split in ("test_id", "test_ood"):
                marks = [True] + [False] * 3
                if row in ("output__golden", "cot-sft__free"):
                    marks = [row == "output__golden"] * 4
                write_scored(run, row, seed, split, marks)
    entries = [
        {"student": p, "seed": 0, "variant": "golden", "signals": {"adherence": {"steps": n, "share": share}}}
        for p, n, share in (("output", 10, 0.5), ("input", 30, 1.0), ("output", 10, 0.5))
    ]
    (run / "results.json").write_text(json.dumps({"entries": entries}))


def test_rows_are_pooled_over_seeds_and_splits_with_paired_differences(tmp_path):
    cfg = cfg_for(["clean"])
    fake_grid(tmp_path, cfg)
    g = grid.write(cfg, tmp_path, {"clean": 12.0})
    rows = g["settings"]["clean"]["rows"]
    assert rows["output__golden"]["mean"] == 1.0 and rows["output__golden"]["n"] == 16
    assert rows["input__random"]["mean"] == 0.25 and rows["cot-sft__free"]["mean"] == 0.0
    diffs = {d["name"]: d for d in g["settings"]["clean"]["differences"]}
    assert diffs["output: golden - predictor"]["mean"] == 0.75 and diffs["output: golden - predictor"]["n"] == 16
    assert diffs["input: predictor - cot-sft"]["mean"] == 0.25
    assert diffs["input - output (predictor)"]["mean"] == 0.0
    assert g["settings"]["clean"]["adherence"] == {"output": 0.5, "input": 1.0}
    assert g["settings"]["clean"]["seconds"] == 12.0
    md = (tmp_path / "grid.md").read_text()
    assert "| output__golden | 1.000 [1.000, 1.000] |" in md and "| adherence (input, golden) | 1.000 |" in md
    assert (tmp_path / "grid.png").stat().st_size > 0 and json.loads((tmp_path / "grid.json").read_text()) == g


def test_a_setting_not_run_yet_shows_empty_cells(tmp_path):
    cfg = cfg_for(["clean", "informative"])
    fake_grid(tmp_path, cfg)
    g = grid.collect(cfg, tmp_path)
    assert g["settings"]["informative"]["rows"]["output__golden"]["n"] == 0
    assert "| output__golden | 1.000 [1.000, 1.000] | – |" in grid.table(g)


def test_setting_config_changes_the_teacher_only():
    cfg = load_config(shipped_config("grid"))
    other = grid.setting_config(cfg, "informative")
    assert other.generate.scripted.setting == "informative" and cfg.generate.scripted.setting == "realistic"
    assert other.model_dump(exclude={"generate"}) == cfg.model_dump(exclude={"generate"})
    students = {s.name: s.train.get("signal_position", "output") for s in cfg.experiment.students}
    assert [students[p] for p in cfg.grid.positions] == ["output", "input", "prefix"]
    assert {f"{v.student}__{v.name}" for v in cfg.experiment.variants} == set(grid.rows(cfg))


def test_the_tables_only_command_reads_the_runs_there(tmp_path, capsys):
    cfg = cfg_for(["clean"])
    fake_grid(tmp_path, cfg)
    (tmp_path / "deltas.yaml").write_text(json.dumps(cfg.model_dump(include={"experiment", "grid"})))
    assert main(["grid", "--tables-only", "--run-dir", str(tmp_path), "--config", str(tmp_path / "deltas.yaml")]) == 0
    assert "| output__golden | 1.000 [1.000, 1.000] |" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["grid.settings=[noisy]", "grid.settings=[]"])
def test_a_bad_setting_is_a_config_error(bad, tmp_path, capsys):
    assert main(["grid", "--run-dir", str(tmp_path / "g"), bad]) == 2
    assert "grid.settings" in capsys.readouterr().err and not (tmp_path / "g").exists()


class FakeChild:
    """A finished child process: writes the setting's scored files when started (as ``rscaffold run``
    would), exits with ``code``."""

    def __init__(self, command, code):
        self.command, self.returncode = command, code

    def poll(self):
        return self.returncode

    def terminate(self):
        pass

    def wait(self):
        return self.returncode


def test_settings_run_in_processes_each_with_its_own_config(tmp_path, monkeypatch):
    import subprocess

    cfg = cfg_for(["clean", "informative", "realistic"]).model_copy(deep=True)
    cfg.grid.processes = 2
    started = []

    def popen(command, **_):
        config = load_config(command[command.index("--config") + 1])
        setting = config.generate.scripted.setting
        started.append((setting, command[command.index("--run-dir") + 1]))
        if setting == "clean":
            fake_grid(tmp_path, cfg)
        return FakeChild(command, 3 if setting == "realistic" else 0)

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(grid.time, "sleep", lambda s: None)
    with pytest.raises(grid.GridFailed, match=r"realistic \(exit 3; see .*realistic.log\)"):
        grid.run(cfg, tmp_path)
    assert sorted(started) == [(s, str(tmp_path / s)) for s in ("clean", "informative", "realistic")]
    g = json.loads((tmp_path / "grid.json").read_text())  # what finished is in the tables
    assert g["settings"]["clean"]["rows"]["output__golden"]["mean"] == 1.0 and "seconds" in g["settings"]["clean"]

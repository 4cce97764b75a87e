"""Trackers: `train.trackers=[tensorboard]` writes the losses and `evaluate` the Pass@1 of every decoded
file as TensorBoard scalars (read back from the event files); a tracker whose package is missing is an
error, not a run that logs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rscaffold import evaluate
from rscaffold.build import build_folder
from rscaffold.config import BuildConfig, Config, EvaluateConfig, TestbedConfig, TrainConfig
from rscaffold.schema import InputError, write_jsonl
from rscaffold.train import train
from tests.test_build import make_traces
from tests.test_evaluate import make_run
from tests.test_train import FAST, TINY

pytest.importorskip("tensorboard")


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files in ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {p.parent for p in folder.rglob("events.out.tfevents.*") if p.parent.name == "rscaffold"}
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    write_jsonl(root / "labelled.jsonl", make_traces(12))
    small = TestbedConfig(train=20, test_id=0, test_ood=0, test_surface=0, perturbed_groups=0)
    build_folder(root / "labelled.jsonl", root / "build", BuildConfig(), small)
    return root / "build"


def test_training_losses_are_written_as_tensorboard_scalars(build_dir: Path, tmp_path: Path):
    cfg = FAST.model_copy(update={"trackers": ["tensorboard"]})
    summary = train(cfg, TINY, build_dir, tmp_path / "s", recipe="scaffold")
    logged = scalars(tmp_path / "s" / "logs")
    assert {"loss", "token_loss", "signal_loss", "lr"} <= set(logged)
    assert [step for step, _ in logged["loss"]] == [1, 2, 3]  # log_every=1, three steps
    for name in ("loss", "token_loss", "signal_loss"):  # float32 in the event file
        assert logged[name][-1][1] == pytest.approx(summary["final"][name], rel=1e-6)
    hparams = next((tmp_path / "s" / "logs" / "rscaffold").rglob("hparams.yml")).read_text()
    assert "recipe: scaffold" in hparams and "model.base: tiny" in hparams


def test_evaluate_logs_pass_at_1_per_student_variant_and_split(tmp_path: Path):
    run = make_run(tmp_path, n=20)
    cfg = Config(train=TrainConfig(trackers=["tensorboard"]), evaluate=EvaluateConfig(bootstrap_samples=20))
    results = evaluate.run(cfg, run)  # evaluate.trackers null: train.trackers
    logged = scalars(run / "logs" / "evaluate")
    expected = {
        f"accuracy/{e['student']}-s{e['seed']}/{e['variant']}/{e['split']}": e["pass@1_strict"]["mean"]
        for e in results["entries"]
    }
    assert len(expected) == len(list((run / "decoded").glob("*.jsonl"))) == 4
    assert {tag: values[-1][1] for tag, values in logged.items()} == pytest.approx(expected, rel=1e-6)
    assert len({round(v, 6) for v in expected.values()}) > 1  # the rows differ: a mix-up would show


def test_evaluate_trackers_can_be_turned_off_while_training_logs(tmp_path: Path):
    run = make_run(tmp_path, n=10)
    cfg = Config(train=TrainConfig(trackers=["tensorboard"]), evaluate=EvaluateConfig(trackers=[]))
    evaluate.run(cfg, run)
    assert not (run / "logs").exists()


def test_a_tracker_whose_package_is_missing_is_an_error_that_names_the_setting(build_dir, tmp_path, monkeypatch):
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "_available_trackers", [])  # as without the tensorboard package
    cfg = FAST.model_copy(update={"trackers": ["tensorboard"]})
    with pytest.raises(InputError, match=r"train\.trackers: tensorboard is not installed \(pip install tensorboard\)"):
        train(cfg, TINY, build_dir, tmp_path / "s", recipe="scaffold")
    run = make_run(tmp_path, n=10)
    with pytest.raises(InputError, match=r"evaluate\.trackers: tensorboard is not installed"):
        evaluate.run(Config(evaluate=EvaluateConfig(trackers=["tensorboard"])), run)
    assert not (run / "results.json").exists()  # it failed before scoring
    with pytest.raises(InputError, match="unknown tracker 'tensorbord'"):
        train(FAST.model_copy(update={"trackers": ["tensorbord"]}), TINY, build_dir, tmp_path / "t", recipe="scaffold")


def test_the_train_stage_of_a_run_logs_each_student_under_the_run_folder(build_dir: Path, tmp_path: Path):
    from rscaffold.config import ExperimentConfig, ExperimentStudent

    run = tmp_path / "run"
    (run / "build").parent.mkdir()
    (run / "build").symlink_to(build_dir, target_is_directory=True)
    students = [ExperimentStudent(name="answers", recipe="answer-sft")]
    cfg = Config(model=TINY, train=FAST.model_copy(update={"trackers": ["tensorboard"]}))
    cfg.experiment = ExperimentConfig(students=students, seeds=[0])
    from rscaffold.train import run as train_run

    train_run(cfg, run)
    logged = scalars(run / "logs" / "train-answers-s0")
    meta = json.loads((run / "students" / "answers-s0" / "rscaffold_student.json").read_text())
    assert logged["loss"][-1][1] == pytest.approx(meta["train"]["final"]["loss"], rel=1e-6)

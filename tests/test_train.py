"""The training loop: every trained parameter changes, resume parity, checkpoints without pickle, recipes,
budgets, 2 processes, SmolLM2."""

from __future__ import annotations

import itertools
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rscaffold import train as train_module
from rscaffold.build import build_folder
from rscaffold.checkpoints import Progress
from rscaffold.config import BuildConfig, ModelConfig, TestbedConfig, TinySizes, TrainConfig
from rscaffold.model import load_student
from rscaffold.schema import InputError, write_jsonl
from rscaffold.train import lr_factor, train
from tests.test_build import make_traces

ROOT = Path(__file__).resolve().parent.parent
TINY = ModelConfig(tiny=TinySizes(hidden=32, layers=2, heads=2, intermediate=64, max_positions=256), vocab_size=300)
FAST = TrainConfig(max_steps=3, batch_size=4, bf16=False, lr=1e-2, log_every=1)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    write_jsonl(root / "labelled.jsonl", make_traces(12))
    small = TestbedConfig(train=20, test_id=0, test_ood=0, test_surface=0, perturbed_groups=0)
    cfg = BuildConfig(pretrain_questions=20, pretrain_drills=10, pruned_contexts=True)
    build_folder(root / "labelled.jsonl", root / "build", cfg, small)
    return root / "build"


def snapshots():
    """An ``on_step`` that keeps a copy of every parameter at step 0 and at the last step."""
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def on_step(step, model):
        seen[step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    return seen, on_step


def test_every_trainable_parameter_changes(build_dir: Path, tmp_path: Path):
    seen, on_step = snapshots()
    summary = train(FAST, TINY, build_dir, tmp_path / "s", recipe="scaffold", on_step=on_step)
    first, final = seen[0], seen[summary["steps"]]
    unchanged = [n for n in first if torch.equal(first[n], final[n])]
    assert not unchanged
    assert any(n.startswith("signal_embedding") for n in first) and any(n.startswith("signal_head") for n in first)
    assert summary["final"]["signal_loss"] > 0


def test_lora_trains_the_adapters_and_signal_layers_and_freezes_the_rest(build_dir: Path, tmp_path: Path):
    seen, on_step = snapshots()
    lora = TINY.model_copy(update={"lora": True, "lora_r": 4})
    summary = train(FAST, lora, build_dir, tmp_path / "s", recipe="scaffold", on_step=on_step)
    first, final = seen[0], seen[summary["steps"]]
    changed = {n for n in first if not torch.equal(first[n], final[n])}
    trained = {n for n in first if "lora_" in n or n.startswith("signal_")}
    assert changed == trained
    model, _, meta = load_student(tmp_path / "s")
    assert meta["weights"] == "full" and not any("lora_" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])  # LoRA: dropout draws random numbers
def test_killed_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(build_dir: Path, tmp_path: Path, lora):
    cfg = FAST.model_copy(update={"max_steps": 7, "checkpoint_every": 3, "batch_size": 5})  # 3 batches an epoch
    model_cfg = TINY.model_copy(update={"lora": lora, "lora_r": 4})
    train(cfg, model_cfg, build_dir, tmp_path / "whole", recipe="scaffold")

    def kill(step, model):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, model_cfg, build_dir, tmp_path / "cut", recipe="scaffold", on_step=kill)
    summary = train(cfg, model_cfg, build_dir, tmp_path / "cut", recipe="scaffold", resume=True)
    assert summary["steps"] == 7 and summary["resumed_from"] == 3
    whole, _, _ = load_student(tmp_path / "whole")
    cut, _, _ = load_student(tmp_path / "cut")
    a, b = whole.state_dict(), cut.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def killed_run(build_dir: Path, out: Path, cfg: TrainConfig, at: int) -> None:
    """A run stopped (as by Ctrl-C) after optimizer step ``at``: its checkpoints stay, no student."""

    def kill(step, model):
        if step == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, TINY, build_dir, out, recipe="scaffold", on_step=kill)


def test_resume_takes_the_newest_complete_checkpoint_and_skips_folders_cut_short(build_dir, tmp_path, caplog):
    cfg = FAST.model_copy(update={"max_steps": 7, "checkpoint_every": 2, "batch_size": 5})
    out = tmp_path / "s"
    killed_run(build_dir, out, cfg, at=5)
    ckpts = out / "checkpoints"
    good = ckpts / "step-0000004"
    largest = max((p for p in good.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    for cut in ("step-0000005", "tmp-step-0000006", "step-0000006"):  # killed while writing them
        shutil.copytree(good, ckpts / cut)
        (ckpts / cut / largest.name).write_bytes(largest.read_bytes()[:100])
    for name in ("complete.json", "optimizer.bin", "random_states_0.pkl"):  # this format's and Accelerate's
        (ckpts / "step-0000006" / name).unlink(missing_ok=True)
    caplog.set_level(logging.INFO, logger="rscaffold.train")
    summary = train(cfg, TINY, build_dir, out, recipe="scaffold", resume=True)
    assert summary["resumed_from"] == 4 and summary["steps"] == 7
    assert f"resumed from {good} at step 4" in caplog.text
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert [m.split(":")[0] for m in skipped] == [str(ckpts / "step-0000006"), str(ckpts / "step-0000005")]


def test_a_fresh_run_removes_the_checkpoints_of_an_earlier_run(build_dir: Path, tmp_path: Path):
    cfg = FAST.model_copy(update={"max_steps": 7, "checkpoint_every": 2, "batch_size": 5})
    out = tmp_path / "s"
    killed_run(build_dir, out, cfg, at=5)  # leaves step 4
    killed_run(build_dir, out, cfg, at=3)  # a fresh run over it: step 2
    assert train(cfg, TINY, build_dir, out, recipe="scaffold", resume=True)["resumed_from"] == 2


def test_resume_with_no_checkpoint_is_an_input_error_that_names_the_setting(build_dir: Path, tmp_path: Path, capsys):
    with pytest.raises(InputError, match=r"train\.checkpoint_every"):
        train(FAST, TINY, build_dir, tmp_path / "s", recipe="scaffold", resume=True)
    from rscaffold.cli import main

    assert main(["train", "--input", str(build_dir), "--output", str(tmp_path / "s"), "--resume"]) == 2
    assert "no complete checkpoint to resume from" in capsys.readouterr().err


def test_a_checkpoint_at_least_every_checkpoint_minutes_of_the_loops_clock(build_dir, tmp_path, monkeypatch):
    now = [0.0]  # minutes pass only when a step ends: 6 a step
    monkeypatch.setattr(train_module, "clock", lambda: now[0] * 60)

    def tick(step, model):
        now[0] += 6 if step else 0

    cfg = FAST.model_copy(update={"max_steps": 6, "keep_checkpoints": 5})
    assert cfg.checkpoint_minutes == 10.0  # the default: a long run is resumable without a setting
    train(cfg, TINY, build_dir, tmp_path / "timed", recipe="scaffold", on_step=tick)
    saved = sorted(p.name for p in (tmp_path / "timed" / "checkpoints").glob("step-*"))
    assert saved == ["step-0000003", "step-0000005"]  # at 12 minutes, then 12 minutes after that
    never = cfg.model_copy(update={"checkpoint_minutes": None})
    train(never, TINY, build_dir, tmp_path / "never", recipe="scaffold", on_step=tick)
    assert not list((tmp_path / "never" / "checkpoints").glob("step-*"))


def test_resuming_a_finished_run_leaves_its_folder_as_it_is(build_dir: Path, tmp_path: Path, caplog):
    """Seen: it rewrote rscaffold_student.json with ``"final": {}`` from the checkpoint of the last step."""
    cfg = FAST.model_copy(update={"max_steps": 4, "checkpoint_every": 2})
    out = tmp_path / "s"
    summary = train(cfg, TINY, build_dir, out, recipe="scaffold")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    caplog.set_level(logging.INFO, logger="rscaffold.train")
    assert train(cfg, TINY, build_dir, out, recipe="scaffold", resume=True) == summary
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == before
    assert "already trained" in caplog.text


class Payload:
    """A pickle that creates ``marker`` when unpickled (any command could run in its place)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_resuming_never_unpickles_a_file_of_the_checkpoint_folder(build_dir: Path, tmp_path: Path):
    """Seen: Accelerate's load_state unpickled custom_checkpoint_*.pkl with weights_only=False."""
    cfg = FAST.model_copy(update={"max_steps": 5, "checkpoint_every": 3})
    out = tmp_path / "s"
    killed_run(build_dir, out, cfg, at=4)
    marker = tmp_path / "the-pickle-ran"
    crafted = pickle.dumps(Payload(marker))
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl"):
        (out / "checkpoints" / "step-0000003" / name).write_bytes(crafted)
    try:
        summary = train(cfg, TINY, build_dir, out, recipe="scaffold", resume=True)
    finally:
        assert not marker.exists(), "resuming ran a command from a crafted pickle"
    assert summary["resumed_from"] == 3 and summary["steps"] == 5
    saved = {p.suffix for p in (out / "checkpoints" / "step-0000003").iterdir()} - {".pkl"}
    assert saved == {".safetensors", ".json"}


@pytest.mark.parametrize("recipe", ["cot-sft", "oracle-cot", "long-sft", "answer-sft", "pretrain"])
def test_baseline_recipes_train_and_save(build_dir: Path, tmp_path: Path, recipe: str):
    summary = train(FAST.model_copy(update={"max_steps": 2}), TINY, build_dir, tmp_path / recipe, recipe=recipe)
    model, _, meta = load_student(tmp_path / recipe)
    assert summary["steps"] == 2 and meta["recipe"] == recipe and model.signal_head is None


def test_students_record_their_answer_lengths_and_tokens_seen(build_dir: Path, tmp_path: Path):
    summary = train(FAST, TINY, build_dir, tmp_path / "p", recipe="scaffold-pruned")
    _, tok, meta = load_student(tmp_path / "p")
    answers = [json.loads(line)["segments"][-1]["text"] for line in (build_dir / "proposer.jsonl").open()]
    longest = max(len(tok.encode(a, add_special_tokens=False)) + 1 for a in answers)
    assert meta["answer_tokens"]["max"] == longest and meta["answer_tokens"]["p99"] <= longest
    assert meta["signal_head"] and 0 < summary["tokens_seen"] <= 3 * 4 * 256


def test_generative_predictor_starts_from_the_trained_proposer(build_dir: Path, tmp_path: Path):
    train(FAST.model_copy(update={"max_steps": 1}), TINY, build_dir, tmp_path / "scaffold", recipe="scaffold")
    cfg = FAST.model_copy(update={"max_steps": 2, "init": str(tmp_path / "scaffold")})
    train(cfg, TINY, build_dir, tmp_path / "predictor", recipe="predictor")
    _, tok, _ = load_student(tmp_path / "scaffold")
    predictor, tok2, meta = load_student(tmp_path / "predictor")
    assert meta["predictor_query"] == "Next signal:" and len(tok2) == len(tok)
    assert predictor.signal_head is None and meta["add_bos"] is True


def test_signal_as_text_and_no_signal_layers_ablations(build_dir: Path, tmp_path: Path):
    as_text = FAST.model_copy(update={"max_steps": 1, "signal_as_text": True})
    train(as_text, TINY, build_dir, tmp_path / "text", recipe="scaffold")
    model, _, meta = load_student(tmp_path / "text")
    assert model.signal_head is None and model.signal_embedding is None and meta["signal_as_text"]
    bare = FAST.model_copy(update={"max_steps": 1, "no_signal_head": True, "no_signal_embedding": True})
    summary = train(bare, TINY, build_dir, tmp_path / "bare", recipe="scaffold")
    assert summary["final"]["signal_loss"] == 0.0


def test_a_time_budget_fixes_the_steps_from_measured_throughput(build_dir: Path, tmp_path: Path):
    cfg = FAST.model_copy(update={"max_steps": None, "max_minutes": 0.05, "probe_steps": 2})
    summary = train(cfg, TINY, build_dir, tmp_path / "s", recipe="scaffold")
    assert summary["planned_steps"] >= 1 and summary["steps"] <= summary["planned_steps"]
    assert summary["seconds"] < 3 * 60 * 0.05 + 2


def test_students_of_different_precisions_train_in_one_process(tmp_path: Path):
    """Seen: a bf16 student after a float32 one in the same process failed (accelerate keeps one precision)."""
    from rscaffold.train import make_accelerator

    for k, bf16 in enumerate((False, True, False)):
        accelerator = make_accelerator(FAST.model_copy(update={"bf16": bf16}), tmp_path / f"s{k}", tmp_path / "logs")
        assert accelerator.mixed_precision == ("bf16" if bf16 else "no")


def test_schedule_warms_up_then_decays_to_zero_at_the_last_step():
    progress, cfg = Progress(), TrainConfig(warmup=0.1)
    progress.total = 100
    lrs = [lr_factor(s, progress, cfg) for s in range(101)]
    assert lrs[0] < lrs[5] < lrs[10] and max(lrs) == pytest.approx(1.0, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:])) and lrs[100] == pytest.approx(0.0)


def test_a_time_budget_replans_after_a_tenth_of_the_time_when_the_probe_overestimated():
    """Seen: a probe planned 493 steps where 45 fitted; the replan waited for step 49 and never came."""
    from rscaffold.train import replan

    class One:  # a single-process accelerator for steps_that_fit
        device = "cpu"

        def reduce(self, t, _):
            return t

    progress = Progress()
    progress.step, progress.total = 4, 493
    now = time.perf_counter()
    cfg = TrainConfig(max_minutes=2)
    replan(One(), progress, cfg, started=now - 20, pace=(now - 20, 0))  # 4 steps in 20 s of 120 s
    assert progress.replanned and 4 < progress.total <= 4 + 100 / 5 + 1


def _launcher() -> list[str]:
    with socket.socket() as sock:  # a free port: port 0 is not understood by every rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    return [
        *launcher,
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        port,
    ]


@pytest.mark.slow
def test_two_process_cpu_run_trains_and_saves(build_dir: Path, tmp_path: Path):
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "CUDA_VISIBLE_DEVICES": "",  # a CPU check, also on a machine with GPUs
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    script = [str(ROOT / "scripts" / "train_tiny.py"), str(build_dir), str(tmp_path / "s"), "3"]

    def launch(*args: str) -> str:
        failures = []
        for _ in range(2):  # a second try when the two processes fail to meet (seen once on a loaded machine)
            done = subprocess.run(
                _launcher() + script + list(args), env=env, capture_output=True, text=True, timeout=120
            )
            if done.returncode == 0:
                return done.stdout
            errors = [line for line in done.stderr.splitlines() if "Error" in line or "error:" in line]
            failures.append("\n".join(errors[:20]) + done.stderr[-2000:])
        raise AssertionError("\n---\n".join(failures))

    assert launch("--checkpoint-every", "1", "--stop-at", "2").count("STOPPED") == 2
    saved = tmp_path / "s" / "checkpoints" / "step-0000002"
    assert {"rng-0.safetensors", "rng-1.safetensors", "complete.json"} <= {p.name for p in saved.iterdir()}
    out = launch("--resume")
    summaries = [json.loads(line[8:]) for line in out.splitlines() if line.startswith("SUMMARY ")]
    assert len(summaries) == 2
    assert all(s["processes"] == 2 and s["steps"] == 3 and s["resumed_from"] == 2 for s in summaries)
    # Loaded in a fresh interpreter: once, after the whole suite, an in-process load met a parameter
    # left on the meta device by some earlier test's state (not reproduced alone).
    code = "import sys; from rscaffold.model import load_student as l; print(l(sys.argv[1])[2]['train']['processes'])"
    loaded = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], env=env, capture_output=True, text=True)
    assert loaded.stdout.split()[-1:] == ["2"], loaded.stderr[-2000:]


@pytest.mark.slow
def test_smollm2_loads_offline_trains_lora_steps_and_saves(build_dir: Path, tmp_path: Path):
    """``pytest -m slow tests/test_train.py``: converts the GGUF once (cached), 2 LoRA steps, saves merged."""
    pytest.importorskip("gguf")
    smol = ModelConfig(base="smollm2", lora_r=4)
    cfg = FAST.model_copy(update={"max_steps": 2, "batch_size": 2, "max_length": 256, "lr": 1e-4, "bf16": True})
    summary = train(cfg, smol, build_dir, tmp_path / "s", recipe="scaffold")
    model, tok, meta = load_student(tmp_path / "s")
    assert summary["steps"] == 2 and meta["base"] == "smollm2" and len(tok) == 49152
    assert model.signal_embedding.weight.abs().sum() > 0


def test_train_command_files_and_run_folder(build_dir: Path, tmp_path: Path, capsys):
    from rscaffold.cli import main

    tiny = ["model.tiny.hidden=32", "model.tiny.layers=2", "model.tiny.heads=2", "model.tiny.intermediate=64"]
    tiny += ["model.tiny.max_positions=256", "model.vocab_size=300", "train.max_steps=1", "train.batch_size=4"]
    out = tmp_path / "s"
    assert main(["train", "--input", str(build_dir), *tiny, "--output", str(out), "--recipe", "answer-sft"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["recipe"] == "answer-sft"
    assert (out / "model.safetensors").exists()
    run = build_dir.parent
    assert main(["train", "--run-dir", str(run), "--recipe", "answer-sft"]) == 2
    assert "--recipe cannot go with --run-dir" in capsys.readouterr().err
    one = "[{name: answers, recipe: answer-sft, seeds: [3]}]"
    assert main(["train", "--run-dir", str(run), *tiny, f"experiment.students={one}", "experiment.seeds=[3]"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["trained"] == 1
    assert (run / "students" / "answers-s3" / "model.safetensors").exists()

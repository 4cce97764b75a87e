"""Training under `accelerate launch` with the shipped configs (rscaffold/config/accelerate): the student two
CPU processes save equals the one a single process trains on the same global batches, signal layers and
merged LoRA included; the whole state dict FSDP2 gathers fills the saved student as an unsharded run's.

On CPUs accelerate 1.15 runs only the DDP config as such (an FSDP config becomes plain data parallelism, and
DeepSpeed needs its package and GPUs): FSDP2 itself is checked here at the torch level, and
scripts/gpu_sharded.sh runs every config on 2 GPUs.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rscaffold.build import build_folder
from rscaffold.config import BuildConfig, ModelConfig, TestbedConfig, TrainConfig
from rscaffold.model import empty_copy, filled, load_student, make_student, save_student, student_meta
from rscaffold.schema import InputError, write_jsonl
from rscaffold.train import train
from tests.test_build import make_traces

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "rscaffold" / "config" / "accelerate"
TINY = ModelConfig.model_validate(
    {"tiny": {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "max_positions": 256}, "vocab_size": 300}
)
# 3 steps of 2 processes x 2 sequences = 3 steps of 2 accumulated micro-batches of 2 in one process: the same
# global batches, one epoch of the 12 proposer records. No clock-based checkpoints (DDP could, FSDP cannot).
ONE = TrainConfig(max_steps=3, batch_size=2, grad_accum=2, lr=1e-2, bf16=False, log_every=1, checkpoint_minutes=None)
TOL = 1e-5


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    write_jsonl(root / "labelled.jsonl", make_traces(12))
    small = TestbedConfig(train=20, test_id=0, test_ood=0, test_surface=0, perturbed_groups=0)
    build_folder(root / "labelled.jsonl", root / "build", BuildConfig(), small)
    return root / "build"


def overrides(section: str, cfg) -> list[str]:
    return [f"{section}.{k}={json.dumps(v)}" for k, v in cfg.model_dump(mode="json", exclude_defaults=True).items()]


def launch(config: str, args: list[str], output: Path) -> str:
    """``accelerate launch --config_file <shipped config> --num_processes 2 -m rscaffold.cli train ARGS`` on
    CPUs; ``output`` is removed before each try (a second try must not keep what the first trained)."""
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "CUDA_VISIBLE_DEVICES": "",  # a CPU check, also on a machine with GPUs
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    failures = []
    for _ in range(2):  # a second try when the two processes fail to meet (seen once on a loaded machine)
        shutil.rmtree(output, ignore_errors=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = str(sock.getsockname()[1])
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config)]
        cmd += ["--num_processes", "2", "--main_process_port", port, "-m", "rscaffold.cli", "train", *args]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return done.stdout
        errors = [line for line in done.stderr.splitlines() if "Error" in line]
        failures.append("\n".join(errors[:10]) + "\n" + done.stderr[-2000:])
    raise AssertionError("\n---\n".join(failures))


def assert_same_student(a: Path, b: Path) -> None:
    """Equal weights (to TOL), signal layers and signal bias files, and metadata apart from the run's own."""
    from safetensors.torch import load_file

    x, y = load_student(a)[0].state_dict(), load_student(b)[0].state_dict()
    assert x.keys() == y.keys()
    worst = {k: (x[k] - y[k]).abs().max().item() for k in x}
    assert max(worst.values()) <= TOL, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    for name in ("signal_layers.safetensors", "signal_bias.safetensors"):
        u, v = load_file(a / name), load_file(b / name)
        assert u.keys() == v.keys() and all(torch.allclose(u[k], v[k], atol=TOL) for k in u)


def live_outputs_equal_saved(live: torch.nn.Module, folder: Path, build: Path) -> None:
    """The saved student computes what the trained model in memory computes (merge, ties, signal layers)."""
    saved, tok, _ = load_student(folder)
    record = json.loads((build / "proposer.jsonl").read_text().splitlines()[0])
    ids = torch.tensor([tok.encode(record["prompt"] + record["segments"][0]["text"])])
    signals = torch.full_like(ids, 2)
    with torch.no_grad():
        a, b = live.eval()(ids, signal_ids=signals), saved(ids, signal_ids=signals)
    for x, y in ((a.lm_logits, b.lm_logits), (a.signal_logits, b.signal_logits)):  # a merge rounds: 1e-4
        assert torch.allclose(x, y, atol=1e-4), (x - y).abs().max()


@pytest.mark.slow
def test_two_ddp_processes_save_the_students_one_process_trains(build_dir: Path, tmp_path: Path):
    """Two students of one launched run (full fine-tuning, then LoRA saved merged: the second trains after
    the first has finished), each against the same training in one process."""
    variants = {"full": {"lora": False}, "lora": {"lora": True, "lora_r": 4, "lora_dropout": 0.0}}  # no draws
    for name, delta in variants.items():
        kept = {}

        def keep(step, model, kept=kept):
            kept[step] = copy.deepcopy(model)

        one = train(ONE, TINY.model_copy(update=delta), build_dir, tmp_path / name, recipe="scaffold", on_step=keep)
        live_outputs_equal_saved(kept[3], tmp_path / name, build_dir)
        moved = (kept[3].signal_embedding.weight - kept[0].signal_embedding.weight).abs().max().item()
        assert moved > 100 * TOL and one["processes"] == 1  # training moved the weights far beyond the tolerance
    run = tmp_path / "run"
    run.mkdir()
    (run / "build").symlink_to(build_dir, target_is_directory=True)
    students = [{"name": name, "recipe": "scaffold", "model": delta} for name, delta in variants.items()]
    args = ["--run-dir", str(run), *overrides("train", ONE.model_copy(update={"grad_accum": 1}))]
    args += [*overrides("model", TINY), "experiment.seeds=[0]", f"experiment.students={json.dumps(students)}"]
    launch("ddp.yaml", args, run / "students")
    for name in variants:
        saved = run / "students" / f"{name}-s0"
        assert_same_student(tmp_path / name, saved)
        meta = json.loads((saved / "rscaffold_student.json").read_text())
        assert meta["train"]["processes"] == 2 and meta["train"]["steps"] == 3 and meta["weights"] == "full"
        assert meta["signal_embedding"] and meta["signal_head"]


def test_processes_that_did_not_meet_are_an_error_not_two_runs_into_one_folder(build_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what a launcher sets; accelerate without ACCELERATE_USE_CPU sees one
    with pytest.raises(InputError, match=r"started 2 processes but they did not meet.*ACCELERATE_USE_CPU=1"):
        train(ONE, TINY, build_dir, tmp_path / "s", recipe="scaffold")


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {name: load_config_from_file(str(CONFIGS / f"{name}.yaml")) for name in ("ddp", "fsdp", "zero2", "zero3")}
    assert {k: c.distributed_type.value for k, c in kinds.items()} == {
        "ddp": "MULTI_GPU",
        "fsdp": "FSDP",
        "zero2": "DEEPSPEED",
        "zero3": "DEEPSPEED",
    }
    assert kinds["fsdp"].fsdp_config["fsdp_version"] == 2
    assert kinds["fsdp"].fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert kinds["zero3"].deepspeed_config["zero3_save_16bit_model"] is True  # get_state_dict needs it
    assert kinds["zero3"].deepspeed_config["zero3_init_flag"] is False  # empty_copy needs whole parameters
    for c in (kinds["zero2"], kinds["zero3"]):  # left "auto": train.grad_accum and train.max_grad_norm decide
        assert "gradient_accumulation_steps" not in c.deepspeed_config and "gradient_clipping" not in c.deepspeed_config


# -- FSDP2 on CPU, at the torch level ---------------------------------------------------------------


def tiny_student(lora: bool):
    from rscaffold.tokenizer import train_bpe
    from tests.conftest import tiny_llama

    tok = train_bpe(["Question: A has 12 apples.\nThinking:\nSo the total is 19.\n\n"] * 10, vocab_size=300)
    cfg = ModelConfig(lora=lora, lora_r=4, lora_dropout=0.0, lora_targets=["q_proj", "v_proj"])
    return make_student(tiny_llama(tok, 0, tie_word_embeddings=True), cfg, sel=True, head=True), tok


def two_steps(model, batches, rank=None) -> None:
    """Two AdamW steps on the mean loss of each step's micro-batches (``rank``: only that one, as FSDP
    averages the ranks' gradients), with clipping that cuts the norm."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    for step in batches:
        mine = step if rank is None else step[rank : rank + 1]
        for ids in mine:
            losses = model(ids, signal_ids=ids % 7, labels=ids, signal_targets=ids % 7)
            ((losses.token + losses.signal) / len(mine)).backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 0.5)  # DTensor-aware under FSDP2
        optimizer.step()
        optimizer.zero_grad()


def fsdp2_worker(rank: int, port: int, out: str) -> None:
    """One of two processes: the student (full, then LoRA) sharded with FSDP2 (each decoder layer a unit,
    as fsdp.yaml), trained, gathered as accelerate 1.15's ``get_state_dict`` gathers it, and saved by
    rank 0 through :func:`empty_copy` and :func:`filled`; rank 0 also trains an unsharded copy."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    mesh = init_device_mesh("cpu", (2,))
    for lora in (False, True):
        model, tok = tiny_student(lora)
        reference, skeleton = copy.deepcopy(model), empty_copy(model)
        g = torch.Generator().manual_seed(1)
        batches = [[torch.randint(0, len(tok), (2, 12), generator=g) for _ in range(2)] for _ in range(2)]
        for layer in model.base_lm().model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        two_steps(model, batches, rank)
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)
        if rank == 0:
            two_steps(reference, batches)
            meta = student_meta("scaffold", reference, {"base": "tiny", "add_bos": False}, {})
            save_student(reference, tok, Path(out) / f"one-{lora}", meta)
            save_student(filled(skeleton, state), tok, Path(out) / f"two-{lora}", meta)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_gathered_state_saves_the_student_an_unsharded_run_trains(tmp_path: Path):
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(fsdp2_worker, args=(port, str(tmp_path)), nprocs=2)
    for lora in (False, True):
        assert_same_student(tmp_path / f"one-{lora}", tmp_path / f"two-{lora}")
        lm = load_student(tmp_path / f"two-{lora}")[0].base_lm()
        assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight  # still tied


@pytest.mark.slow
def test_the_gpu_script_dry_run_names_every_config(tmp_path: Path):
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "RUN": str(tmp_path / "sharded")}
    done = subprocess.run([str(ROOT / "scripts" / "gpu_sharded.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for config in ("ddp", "fsdp", "zero2", "zero3"):  # DeepSpeed ones: launched, or skipped without the package
        launched = f"accelerate/{config}.yaml --num_processes 2" in done.stderr
        assert launched or f"{config}: skipped (no deepspeed package" in done.stderr, config
    assert done.stderr.count("train.grad_accum=2") == 2  # the single-process reference of each variant

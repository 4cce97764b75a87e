"""Training checkpoints in safetensors and JSON only: a crafted pickle in a checkpoint folder would run
code, so nothing here unpickles. A checkpoint is written into ``tmp-step-N/`` and renamed to ``step-N/``
once every file is in place (``complete.json`` last, listing every file and its size); resuming takes
the newest complete one.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from rscaffold.config import TrainConfig
from rscaffold.schema import InputError

log = logging.getLogger(__name__)


class Progress:
    """Where the loop is (saved in checkpoints): optimizer steps, epoch, batches seen in it, total steps,
    and whether a time-budgeted run has re-planned its total."""

    def __init__(self):
        self.step, self.epoch, self.batch, self.total, self.replanned = 0, 0, 0, 0, 0

    def state_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, int]) -> None:
        vars(self).update(state)


CHECKPOINT_FORMAT = 1
DONE_FILE = "complete.json"
"""Written last in a checkpoint folder: the format and every file with its size."""
STEP_DIR = re.compile(r"step-\d+")


def check_checkpoints(accelerator, cfg: TrainConfig, resuming: bool) -> None:
    """Checkpoints hold whole tensors per model and optimizer: not the shards of FSDP or DeepSpeed."""
    from accelerate.utils import DistributedType

    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if sharded and (resuming or cfg.checkpoint_every or cfg.checkpoint_minutes):
        raise InputError(
            f"checkpoints support one process or DDP, not {accelerator.distributed_type.value}: "
            "set train.checkpoint_every=0 and train.checkpoint_minutes=null"
        )


def clear_checkpoints(ckpt_dir: Path) -> None:
    """A fresh run removes an earlier run's checkpoints, so that a later ``--resume`` cannot mix two runs."""
    old = [*step_dirs(ckpt_dir), *ckpt_dir.glob("tmp-step-*")]
    if old:
        log.info("%s: a fresh run; removing %d checkpoints of an earlier one", ckpt_dir, len(old))
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)


def checkpoint_due(accelerator, cfg: TrainConfig, step: int, since_s: float) -> bool:
    """Every ``checkpoint_every`` steps, and once ``checkpoint_minutes`` have passed since the last
    checkpoint (or the loop's start); the clock's verdict is shared, so that every rank saves together."""
    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
        return True
    if not cfg.checkpoint_minutes:
        return False
    due = since_s >= cfg.checkpoint_minutes * 60
    if accelerator.num_processes == 1:
        return due
    return bool(accelerator.reduce(torch.tensor(float(due), device=accelerator.device), "max") > 0)


def save_checkpoint(accelerator, model, optimizer, scheduler, progress: Progress, ckpt_dir: Path, keep: int) -> Path:
    """``ckpt_dir/step-N/``: ``model.safetensors``, ``optimizer.safetensors`` (the optimizer's tensors),
    ``state.json`` (progress, which includes the sampler's position, the scheduler, the optimizer's groups
    and scalars), ``rng-<rank>.safetensors`` per process, and :data:`DONE_FILE` last. Written in
    ``tmp-step-N/`` and renamed when complete, so that a run killed while saving leaves no step folder."""
    from safetensors.torch import save_file, save_model

    final = ckpt_dir / f"step-{progress.step:07d}"
    tmp = ckpt_dir / f"tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    tensors, scalars = rng_state()
    save_file(tensors, str(tmp / f"rng-{accelerator.process_index}.safetensors"), metadata=scalars)
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), str(tmp / "model.safetensors"))
        opt_tensors, opt_rest = split_optimizer_state(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        state = {"format": CHECKPOINT_FORMAT, "processes": accelerator.num_processes, "progress": progress.state_dict()}
        state |= {"scheduler": scheduler.state_dict(), "optimizer": opt_rest}
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        (tmp / DONE_FILE).write_text(json.dumps({"format": CHECKPOINT_FORMAT, "files": files}), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)  # an incomplete folder of the same step
        tmp.rename(final)
        older = [d for d in step_dirs(ckpt_dir) if d.name < final.name]
        complete = [d for d in older if incomplete(d) is None]
        for old in set(older) - set(complete[max(0, len(complete) - keep + 1) :]):  # and those cut short
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def step_dirs(ckpt_dir: Path) -> list[Path]:
    """Checkpoint folders, oldest first (complete or not)."""
    return sorted(d for d in ckpt_dir.glob("step-*") if STEP_DIR.fullmatch(d.name) and d.is_dir())


def incomplete(folder: Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint (None: it is): no :data:`DONE_FILE`, or a file it
    lists missing or of another size."""
    try:
        done = json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
        files = dict(done["files"]) if done.get("format") == CHECKPOINT_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"no readable {DONE_FILE}"
    if files is None:
        return f"format {done.get('format')!r}, not {CHECKPOINT_FORMAT}"
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{name} missing or cut short"
    return None


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete checkpoint; folders cut short are skipped with a warning."""
    for folder in reversed(step_dirs(ckpt_dir)):
        why = incomplete(folder)
        if why is None:
            return folder
        log.warning("%s: incomplete checkpoint (%s), skipped", folder, why)
    return None


def load_checkpoint(accelerator, folder: Path, model, optimizer, scheduler, progress: Progress) -> None:
    """Restore what :func:`save_checkpoint` wrote, with ``safetensors`` and ``json`` only."""
    from safetensors.torch import load_file, load_model

    rng = folder / f"rng-{accelerator.process_index}.safetensors"
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        load_model(accelerator.unwrap_model(model), str(folder / "model.safetensors"), strict=True)
        tensors = load_file(str(folder / "optimizer.safetensors"))
        optimizer.load_state_dict(join_optimizer_state(tensors, state["optimizer"]))
        current = scheduler.state_dict()  # only its own keys, and the lambdas stay the loop's
        saved = {k: v for k, v in state["scheduler"].items() if k in current and k != "lr_lambdas"}
        scheduler.load_state_dict({**current, **saved})
        progress.load_state_dict({k: int(state["progress"][k]) for k in progress.state_dict()})
        same = state["processes"] == accelerator.num_processes and rng.is_file()
        if same:
            set_rng_state(rng)
    except Exception as err:  # safetensors' own error too: a broken file is the user's to fix
        raise InputError(f"{folder}: unreadable checkpoint ({err}); delete it to resume from an older one") from err
    if not same:
        log.warning("%s: saved by %d processes, resumed by %d: random states not restored",
                    folder, state["processes"], accelerator.num_processes)  # fmt: skip


def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state dict as tensors under ``"<param index>.<name>"`` and the rest (param groups,
    non-tensor entries) for JSON."""
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`split_optimizer_state` (JSON turned tuples such as ``betas`` into lists)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *rest["scalars"].items()]:
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
        for g in rest["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """This process's random states: torch (CPU, and each CUDA device), numpy's and python's key arrays
    as tensors, their other fields as JSON strings (safetensors metadata)."""
    import numpy as np

    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(mt, dtype=torch.int64),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
    }
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    scalars = {"python": json.dumps([version, gauss]), "numpy": json.dumps([kind, int(pos), int(has_gauss), cached])}
    return tensors, scalars


def set_rng_state(path: Path) -> None:
    import numpy as np
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        scalars, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    version, gauss = json.loads(scalars["python"])
    random.setstate((version, tuple(tensors["python"].tolist()), gauss))
    kind, pos, has_gauss, cached = json.loads(scalars["numpy"])
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)

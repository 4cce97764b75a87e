"""The train stage: train a student on Accelerate (METHOD.md section 4).

``rscaffold train --run-dir RUN`` trains every student of ``experiment.students`` on ``RUN/build/`` into
``RUN/students/<name>-s<seed>/`` (``--input BUILD --output DIR``: one student with ``train.*``), a
Hugging Face folder that :func:`rscaffold.model.load_student` loads in one call. Recipes (a plain
dict, :data:`RECIPES`): ``scaffold`` (the proposer: step tokens + signal head), ``predictor`` (the
paper's generative signal predictor, initialised from the trained proposer), ``cot-sft``,
``long-sft``, ``answer-sft`` (the baselines) and ``pretrain`` (a generic corpus for a tiny base model).

The loop is plain PyTorch on an ``Accelerator``, so ``accelerate launch`` gives DDP, FSDP or DeepSpeed
unchanged (``rscaffold/config/accelerate/{ddp,fsdp,zero2,zero3}.yaml``): gradient accumulation, bf16
autocast, a cosine schedule with warmup, completion-only loss, length-bucketed batches, a progress bar,
Accelerate trackers (``train.trackers``: the losses, under ``<output>/logs``; a run's under ``RUN/logs``).
The saved student is the whole state dict that ``accelerator.get_state_dict`` gathers (FSDP and ZeRO-3
hold shards), written by the first process into an empty copy of the student, so it equals what one
process saves. Checkpoints (every ``train.checkpoint_every`` steps and ``train.checkpoint_minutes``, one
process or DDP) are safetensors and JSON, never pickle, and renamed into place when complete;
``--resume`` continues from the newest complete one.

Length of a run: ``train.max_steps`` if set; else ``train.max_tokens`` (a token budget turned into steps
from the set's mean sequence length, so that recipes with long and short sequences get equal budgets);
else ``train.max_minutes`` (a wall-clock budget of the loop;
METHOD.md section 7: each fine-tune needs a schedule that ends at its own budget); else ``train.epochs``.
With a budget, the loop first times ``probe_steps`` forward/backward passes without updating the weights
and plans the number of optimizer steps that fit; after a tenth of them it re-plans once from the measured
pace of the real loop (optimizer, logging and checkpoints included), so the cosine schedule reaches zero
at the budget; a guard stops the loop at the budget in any case. The plan is kept in checkpoints: a
resumed run keeps its total and gets a fresh budget for the rest.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from rscaffold import runs
from rscaffold.build import answer_texts, answer_tokens
from rscaffold.checkpoints import (
    Progress,
    check_checkpoints,
    checkpoint_due,
    clear_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from rscaffold.config import Config, ModelConfig, TrainConfig
from rscaffold.model import META_FILE, empty_copy, filled, make_student, save_student, student_meta
from rscaffold.schema import InputError
from rscaffold.signals import SIGNAL_TEXT, TITLES, Signal
from rscaffold.tokenizer import BucketBatches, collate, encode_pair, encode_proposer, load_tokenizer

log = logging.getLogger(__name__)

RECIPES: dict[str, dict[str, Any]] = {
    "scaffold": {"file": "proposer.jsonl", "proposer": True},
    # The proposer also on pruned contexts (build.pruned_contexts): for summaries-only decoding.
    "scaffold-pruned": {"file": "proposer_pruned.jsonl", "proposer": True},
    "predictor": {"file": "predictor.jsonl", "init": "scaffold"},
    "cot-sft": {"file": "cot.jsonl"},  # the teacher's own post-thinking answer
    # The equations-only solution from the testbed's hidden graph: a reference row, not a baseline.
    "oracle-cot": {"file": "oracle_cot.jsonl"},
    "long-sft": {"file": "long.jsonl"},
    "answer-sft": {"file": "answer.jsonl"},
    "pretrain": {"file": "pretrain.jsonl"},
}

LOG_SECONDS = 30.0  # a progress line this often when stderr is not a terminal
clock = time.perf_counter  # the loop's clock (tests replace it)


def lr_factor(step: int, progress: Progress, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup * total`` steps, then cosine decay to 0 at ``total``."""
    total = max(progress.total, 1)
    warm = max(1, round(cfg.warmup * total)) if cfg.warmup else 0
    if step < warm:
        return (step + 1) / (warm + 1)
    if cfg.schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def load_records(data_dir: Path, recipe: str, cfg: TrainConfig) -> list[dict[str, Any]]:
    path = data_dir / RECIPES[recipe]["file"]
    if not path.exists():
        hint = " (build.pretrain_questions > 0 writes it)" if recipe == "pretrain" else ""
        raise InputError(
            f"{path}: not found; `rscaffold build --input LABELLED.jsonl --output {data_dir}` writes it{hint}"
        )
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records:
        raise InputError(f"{path}: no records")
    if cfg.max_examples and len(records) > cfg.max_examples:  # e.g. the predictor's ~10 pairs per trace
        import random

        records = random.Random(cfg.seed).sample(records, cfg.max_examples)
    if (cfg.signal_as_text or cfg.signal_position == "prefix") and RECIPES[recipe].get("proposer"):
        with_signal_text(records, keep_signals=not cfg.signal_as_text)
    return records


def with_signal_text(records: list[dict[str, Any]], keep_signals: bool) -> list[dict[str, Any]]:
    """Each step of proposer records after its signal's name (``signals.SIGNAL_TEXT``), in place: the
    signal-as-text ablation (``keep_signals=False``: no signal ids, no head targets) and signal position
    ``prefix`` (the ids stay: the head learns to predict the signal at each boundary)."""
    for r in records:
        r["segments"] = [
            {
                "text": SIGNAL_TEXT.format(title=TITLES[Signal(s["signal"])]) + s["text"],
                "signal": s["signal"] if keep_signals else -1,
            }
            for s in r["segments"]
        ]
    return records


def corpus(records: list[dict[str, Any]]) -> list[str]:
    """Texts of a set, to train a tiny student's tokenizer on."""
    return [
        r["prompt"] + ("".join(s["text"] for s in r["segments"]) if "segments" in r else r["completion"])
        for r in records
    ]


def load_backbone(recipe: str, model_cfg: ModelConfig, cfg: TrainConfig, records, data_dir: Path, ckpt_dir: Path):
    """The base causal LM and tokenizer; on resume the tokenizer saved at the start of the run is reused."""
    from rscaffold.base_models import _pretrained, load_base

    if RECIPES[recipe].get("init"):
        first = RECIPES[recipe]["init"]
        if not cfg.init:
            raise InputError(f"train.recipe={recipe} starts from a trained {first} student: set train.init=DIR")
        init = Path(cfg.init)
        if not init.exists():
            raise InputError(f"{init}: not found; train the {first} student first (train.init)")
        return _pretrained(str(init))
    saved = ckpt_dir / "tokenizer"
    if model_cfg.base == "tiny" and saved.exists():
        return load_base(model_cfg, corpus=lambda: [], seed=cfg.seed, tokenizer=load_tokenizer(saved))
    return load_base(model_cfg, corpus=lambda: corpus(records) + wording(recipe, data_dir), seed=cfg.seed)


def wording(recipe: str, data_dir: Path) -> list[str]:
    """Extra tokenizer text for a base model: the build's trace wording (long.jsonl), so that the
    students fine-tuned from it tokenise traces well. The model itself never trains on them."""
    path = data_dir / RECIPES["long-sft"]["file"]
    if recipe != "pretrain" or not path.exists():
        return []
    return corpus([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])


def loss_weights(cfg: TrainConfig, has_head: bool) -> tuple[float, float]:
    """(w_token, w_signal): ``L_token + lambda L_signal`` or ``(1 - beta) L_token + beta L_signal``."""
    if not has_head:
        return 1.0, 0.0
    return (1.0, cfg.signal_lambda) if cfg.loss_form == "lambda" else (1.0 - cfg.signal_beta, cfg.signal_beta)


def make_accelerator(cfg: TrainConfig, out_dir: Path, logs: Path):
    """The run's ``Accelerator`` (its kind from ``accelerate launch``), trackers writing under ``logs``."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    check_trackers(cfg.trackers, "train.trackers")
    # Auto: bf16 on a GPU that supports it. Not on CPUs: measured here, autocast made tiny students
    # 1.7-3.5x slower than float32 on 2 cores.
    bf16 = cfg.bf16 if cfg.bf16 is not None else (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    fresh_precision("bf16" if bf16 else "no")
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision="bf16" if bf16 else "no",
        log_with=cfg.trackers or None,
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(logs)),
    )
    check_launch(accelerator)
    # DeepSpeed values left "auto" that accelerate cannot fill for this loop: the loader has a batch sampler
    # (no batch_size), and DeepSpeed clips inside its own step ("auto" would clip at 1.0).
    ds = accelerator.deepspeed_plugin
    for key, value in (("train_micro_batch_size_per_gpu", cfg.batch_size), ("gradient_clipping", cfg.max_grad_norm)):
        if ds is not None and ds.deepspeed_config.get(key, "auto") == "auto":
            ds.deepspeed_config[key] = value
    return accelerator


def fresh_precision(wanted: str) -> None:
    """accelerate keeps one mixed precision per process and refuses another: a second student trained in
    the same process with another precision starts the accelerator state afresh (the process group,
    accelerate's PartialState, is kept)."""
    from accelerate.state import AcceleratorState

    held = AcceleratorState._shared_state.get("_mixed_precision")
    if held is not None and held != wanted:
        AcceleratorState._reset_state(reset_partial_state=False)


def check_launch(accelerator) -> None:
    """Processes of a launcher that did not meet would each train alone into the same folder: an error.
    An FSDP config on CPUs runs as plain data parallelism (accelerate 1.15 shards only on accelerators)."""
    started = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if started > 1 and accelerator.num_processes == 1:
        raise InputError(
            f"train: the launcher started {started} processes but they did not meet (accelerate sees one); "
            "on CPUs set ACCELERATE_USE_CPU=1"
        )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and accelerator.distributed_type.value != "FSDP":
        log.warning("an FSDP config, but accelerate runs %s: every process holds the whole student",
                    accelerator.distributed_type.value)  # fmt: skip


def check_trackers(names: list[str], key: str) -> None:
    """Accelerate leaves out a tracker whose package is missing with a debug line only, so nothing would
    be logged: an error that names it instead (``key``: the setting, e.g. ``train.trackers``)."""
    if not names:
        return
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS and name != "all":
            raise InputError(f"{key}: unknown tracker {name!r}; known: {', '.join(LOGGER_TYPE_TO_CLASS)}")
        if name != "all" and name not in available:
            raise InputError(f"{key}: {name} is not installed (pip install {name}), so nothing would be logged")


def hparams(recipe: str, cfg: TrainConfig, model_cfg: ModelConfig) -> dict[str, Any]:
    """The settings as trackers take them: TensorBoard's hparams refuse None, lists and dicts (JSON text)."""
    flat = {"recipe": recipe, **cfg.model_dump(mode="json")}
    flat |= {f"model.{k}": v for k, v in model_cfg.model_dump(mode="json").items()}
    return {k: v if isinstance(v, bool | int | float | str) else json.dumps(v) for k, v in flat.items()}


def steps_for_tokens(cfg: TrainConfig, lengths: list[int], processes: int) -> int:
    """Optimizer steps that see about ``cfg.max_tokens`` tokens (mean length x sequences per step)."""
    per_step = sum(lengths) / len(lengths) * cfg.batch_size * cfg.grad_accum * processes
    return max(1, round(cfg.max_tokens / per_step))


def probe_total(accelerator, model, loader, cfg: TrainConfig, budget_s: float) -> int:
    """Optimizer steps that fit in ``budget_s``: time ``probe_steps`` forward/backward passes (after one
    untimed pass) without updating the weights, averaged over processes so every rank agrees."""
    batches = iter(loader)
    times = []
    for i in range(cfg.probe_steps + 1):
        batch = next(batches, None)
        if batch is None:
            break
        started = clock()
        with accelerator.no_sync(model):
            losses = model(**batch)
            accelerator.backward(losses.token + losses.signal)
        if i:
            times.append(clock() - started)
    model.zero_grad(set_to_none=True)
    return steps_that_fit(accelerator, budget_s, sum(times) / max(1, len(times)) * cfg.grad_accum)


def steps_that_fit(accelerator, seconds: float, per_step: float) -> int:
    """``seconds / per_step``, with the slowest rank's ``per_step`` (every rank must plan the same)."""
    slowest = float(accelerator.reduce(torch.tensor(per_step, device=accelerator.device), "max"))
    return max(1, int(seconds / max(slowest, 1e-9)))


def replan(accelerator, progress: Progress, cfg: TrainConfig, started: float, pace: tuple[float, int]) -> None:
    """Once, after a tenth of the planned steps or of the budget, whichever comes first: fix the total
    from the loop's measured pace (the probe leaves out the optimizer, logging and checkpoints, and
    has been seen to be 10x off on long sequences), so that the schedule ends at the budget.
    ``pace``: when this invocation's loop started, and at which step."""
    if not cfg.max_minutes or cfg.max_steps or cfg.max_tokens or progress.replanned:
        return
    now = clock()
    by_steps = progress.step >= max(5, progress.total // 10)
    by_time = progress.step - pace[1] >= 3 and now - started >= 0.1 * cfg.max_minutes * 60
    if not (by_steps or by_time):
        return
    per_step = (now - pace[0]) / max(1, progress.step - pace[1])
    left = cfg.max_minutes * 60 - (now - started)
    progress.total = progress.step + steps_that_fit(accelerator, max(left, 0.0), per_step)
    progress.replanned = 1


def train(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    recipe: str | None = None,
    resume: bool = False,
    on_step: Any = None,
    logs: str | Path | None = None,
) -> dict[str, Any]:
    """Train ``recipe`` on ``data_dir`` (a build folder) and save the student to ``out_dir``.

    ``resume``: continue from the newest complete checkpoint in ``out_dir/checkpoints`` (none is an
    error); a student already saved in ``out_dir`` is left as it is. A fresh run removes the checkpoints
    of an earlier one. ``on_step(step, model)`` is called before the first step of a fresh run (step 0)
    and after every optimizer step, with the unwrapped model (tests use it to snapshot weights and to
    kill a run). ``logs``: the trackers' folder (default ``out_dir/logs``). Returns the training summary
    (also saved in the student's ``rscaffold_student.json``).
    """
    from accelerate.utils import set_seed
    from tqdm import tqdm

    recipe = recipe or cfg.recipe
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if resume and (done := finished(out_dir)) is not None:
        log.info("%s: already trained (%s written); resuming leaves it as it is", out_dir, META_FILE)
        return done
    ckpt = latest_checkpoint(ckpt_dir) if resume else None
    if resume and ckpt is None:
        raise InputError(
            f"{ckpt_dir}: no complete checkpoint to resume from; a run writes them every "
            "train.checkpoint_minutes (default 10) and every train.checkpoint_every steps: set one "
            "(e.g. train.checkpoint_every=100) and train again without --resume"
        )
    set_seed(cfg.seed)
    accelerator = make_accelerator(cfg, out_dir, Path(logs) if logs else out_dir / "logs")
    check_checkpoints(accelerator, cfg, ckpt is not None)
    if ckpt is None and accelerator.is_main_process:
        clear_checkpoints(ckpt_dir)
    model, tokenizer, info, examples, answers = prepare_student(accelerator, recipe, cfg, model_cfg, data_dir, ckpt_dir)
    lengths = [len(e["input_ids"]) for e in examples]

    lr = cfg.lr or (1e-4 if hasattr(model.lm, "peft_config") else 3e-3)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=cfg.weight_decay)
    progress = Progress()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, progress, cfg))
    sampler = BucketBatches(lengths, cfg.batch_size, cfg.seed, cfg.bucket)
    loader = torch.utils.data.DataLoader(  # its own generator: each new iterator draws a seed, which on the
        examples,  # global one would make a resumed run's dropout differ from an uninterrupted run's
        batch_sampler=sampler,
        collate_fn=partial(collate, pad_id=tokenizer.pad_token_id),
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    skeleton = empty_copy(model)
    model._no_split_modules = getattr(model.base_lm(), "_no_split_modules", None)  # FSDP wraps these layers
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if ckpt is not None:
        load_checkpoint(accelerator, ckpt, model, optimizer, scheduler, progress)
        log.info("resumed from %s at step %d", ckpt, progress.step)
    started, resumed_from = clock(), progress.step
    if progress.total == 0:
        steps_per_epoch = max(1, len(loader) // cfg.grad_accum)
        budget = cfg.max_minutes * 60 if cfg.max_minutes else None
        if cfg.max_steps:
            progress.total = cfg.max_steps
        elif cfg.max_tokens:
            progress.total = steps_for_tokens(cfg, lengths, accelerator.num_processes)
        elif budget:
            progress.total = probe_total(accelerator, model, loader, cfg, budget)
        else:
            progress.total = math.ceil(cfg.epochs * steps_per_epoch)
    if cfg.trackers:
        name = {"wandb": {"name": Path(logs).name if logs else out_dir.name}}
        accelerator.init_trackers("rscaffold", config=hparams(recipe, cfg, model_cfg), init_kwargs=name)

    w_token, w_signal = loss_weights(cfg, accelerator.unwrap_model(model).signal_head is not None)
    bar = tqdm(
        total=progress.total,
        initial=progress.step,
        desc=f"train {recipe}",
        disable=not (accelerator.is_main_process and sys.stderr.isatty()),
    )
    seen_tokens, last, pace = 0, {}, (clock(), progress.step)
    logged = saved_at = clock()
    model.train()
    if on_step is not None and progress.step == 0:
        on_step(0, accelerator.unwrap_model(model))
    while progress.step < progress.total:
        sampler.epoch = progress.epoch
        batches = accelerator.skip_first_batches(loader, progress.batch) if progress.batch else loader
        for batch in batches:
            with accelerator.accumulate(model):
                losses = model(**batch)
                loss = w_token * losses.token + w_signal * losses.signal  # METHOD.md sec. 4: L_token + lambda L_signal
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)  # FSDP: its own
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            progress.batch += 1
            seen_tokens += int(batch["attention_mask"].sum())
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            progress.step += 1
            bar.update(1)
            if progress.step % cfg.log_every == 0 or progress.step == progress.total:  # .item() syncs a GPU
                last = {"loss": loss.item(), "token_loss": losses.token.item(), "signal_loss": losses.signal.item()}
                last["lr"] = scheduler.get_last_lr()[0]
                accelerator.log(last, step=progress.step)
                bar.set_postfix(loss=f"{last['loss']:.3f}")
            if checkpoint_due(accelerator, cfg, progress.step, clock() - saved_at):
                save_checkpoint(accelerator, model, optimizer, scheduler, progress, ckpt_dir, cfg.keep_checkpoints)
                saved_at = clock()
            if on_step is not None:
                on_step(progress.step, accelerator.unwrap_model(model))
            replan(accelerator, progress, cfg, started, pace)
            if bar.disable and accelerator.is_main_process and clock() - logged >= LOG_SECONDS:
                logged = clock()  # no bar off a terminal: one line now and then instead
                log.info("train %s: step %d/%d, loss %.3f, %.0fs", recipe, progress.step, progress.total,
                         loss.item(), logged - started)  # fmt: skip
            if progress.step >= progress.total or _over_budget(accelerator, cfg, started):
                break
        else:
            progress.epoch, progress.batch = progress.epoch + 1, 0
            continue
        break
    bar.close()
    summary = {
        "recipe": recipe,
        "steps": progress.step,
        "planned_steps": progress.total,
        "token_budget": cfg.max_tokens,
        "tokens_seen": seen_tokens * accelerator.num_processes,  # this invocation's (a resumed run: since resuming)
        "resumed_from": resumed_from,
        **throughput(accelerator, seen_tokens, clock() - started),
        "lr": lr,
        "examples": len(examples),
        "tokens": {
            "mean": round(sum(lengths) / len(lengths), 1),
            "max": max(lengths),
            "cut": lengths.count(cfg.max_length),
        },
        "final": last,
    }
    state = accelerator.get_state_dict(model)  # every process takes part: FSDP and ZeRO-3 gather the shards
    if accelerator.is_main_process:
        student = filled(skeleton, state)
        as_text = cfg.signal_as_text or (cfg.signal_position == "prefix" and bool(RECIPES[recipe].get("proposer")))
        extra = {**layout(data_dir), "train": summary, "signal_as_text": as_text, "signal_text": SIGNAL_TEXT}
        extra["answer_tokens"] = answers  # decode's default answer budget covers these
        meta = student_meta(recipe, student, info, extra)
        merge = model_cfg.save == "merged" or info["base"] == "tiny"  # a random base cannot be rebuilt
        save_student(student, tokenizer, out_dir, meta, merge=merge)
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:  # not end_training(): it ends the process group, which the next
        tracker.finish()  # student of a run and the later stages of `rscaffold run` under a launcher need
    return summary


def prepare_student(accelerator, recipe: str, cfg: TrainConfig, model_cfg: ModelConfig, data_dir: Path, ckpt_dir: Path):
    """The student for ``recipe`` (base, LoRA, signal layers per the ablations), its encoded examples and
    the token lengths of the answers it learns (:func:`rscaffold.build.answer_tokens`).

    A tiny student's tokenizer is saved in the checkpoint folder at once, so a resumed run reuses it."""
    records = load_records(data_dir, recipe, cfg)
    lm, tokenizer, info = load_backbone(recipe, model_cfg, cfg, records, data_dir, ckpt_dir)
    if accelerator.is_main_process and model_cfg.base == "tiny" and not RECIPES[recipe].get("init"):
        tokenizer.save_pretrained(str(ckpt_dir / "tokenizer"))
    proposer = bool(RECIPES[recipe].get("proposer"))
    signals = proposer and not cfg.signal_as_text
    sel, head = signals and not cfg.no_signal_embedding, signals and not cfg.no_signal_head
    model = make_student(lm, model_cfg, sel=sel, head=head, position=cfg.signal_position if proposer else "output")
    encode = encode_proposer if proposer else encode_pair
    examples = [encode(r, tokenizer, info["add_bos"], cfg.max_length) for r in records]
    return model, tokenizer, info, examples, answer_tokens(answer_texts(records), tokenizer)


def throughput(accelerator, tokens: int, seconds: float) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens * accelerator.num_processes / max(seconds, 1e-9), 1),
        "processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
    }


def layout(data_dir: Path) -> dict[str, Any]:
    """The prompt template and predictor query the build used (decode must format prompts the same way)."""
    stats = data_dir / "stats.json"
    saved = json.loads(stats.read_text()) if stats.exists() else {}
    return {k: saved.get(k) for k in ("prompt_template", "predictor_query")}


def _over_budget(accelerator, cfg: TrainConfig, started: float) -> bool:
    """The loop's wall-clock guard (all ranks agree, so none waits for a collective that never comes)."""
    if not cfg.max_minutes or cfg.max_steps:
        return False
    over = torch.tensor(float(clock() - started > cfg.max_minutes * 60), device=accelerator.device)
    return bool(accelerator.reduce(over, "max") > 0)


def finished(out_dir: Path) -> dict[str, Any] | None:
    """The training summary of a saved student (its ``rscaffold_student.json``, written once training
    ended), or None."""
    try:
        return dict(json.loads((out_dir / META_FILE).read_text(encoding="utf-8"))["train"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tokens_seen(folder: Path) -> int:
    """Training tokens an experiment student saw (an equal-token student trains after it)."""
    meta = folder / META_FILE
    if not meta.exists():
        raise InputError(f"{folder}: not trained yet; list the student named by tokens_of before this one")
    return int(json.loads(meta.read_text(encoding="utf-8"))["train"]["tokens_seen"])


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The train stage in a run folder: every student of ``experiment.students`` for each of its seeds,
    with the ``train`` settings unless it overrides them, or as many tokens as another student saw
    (``tokens_of``), into ``students/<name>-s<seed>/``; a student already trained is kept, one cut short
    resumes from its newest complete checkpoint."""
    exp = cfg.experiment
    data = runs.require(runs.build_dir(run_dir), "build", run_dir)
    trained = 0
    for seed in exp.seeds:
        for s in exp.students:
            if seed not in (s.seeds or exp.seeds):
                continue
            out = runs.student_dir(run_dir, s.name, seed)
            if (out / META_FILE).exists():
                runs.say(f"train {s.name} seed {seed}: kept {out}")
                continue
            tcfg = TrainConfig.model_validate({**cfg.train.model_dump(), "seed": seed, **s.train, "recipe": s.recipe})
            if s.tokens_of:
                seen = _tokens_seen(runs.student_dir(run_dir, s.tokens_of, seed))
                tcfg = tcfg.model_copy(update={"max_tokens": seen})
            if s.recipe == "predictor":
                tcfg = tcfg.model_copy(update={"init": str(runs.student_dir(run_dir, s.init or "scaffold", seed))})
            mcfg = ModelConfig.model_validate({**cfg.model.model_dump(), **s.model})
            started = time.perf_counter()
            resume = latest_checkpoint(out / "checkpoints") is not None  # an interrupted run goes on
            summary = train(tcfg, mcfg, data, out, resume=resume, logs=runs.logs_dir(run_dir) / f"train-{out.name}")
            runs.say(
                f"train {s.name} seed {seed}: {summary['steps']} steps, {summary['tokens_per_s']:.0f} tok/s, "
                f"{time.perf_counter() - started:.0f}s, loss {summary['final'].get('loss', float('nan')):.3f} -> {out}"
            )
            trained += 1
    return {"trained": trained}

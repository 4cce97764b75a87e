"""What each training recipe learns from, and the training settings (the ``train`` config section).

Kept apart from the training loop so that reading a config does not load PyTorch.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class TrainConfig(BaseModel):
    """How a student is trained; the paper's recipe is LoRA r=16, lr 1e-4, batch 1 x 8, cosine, warmup 0.05."""

    model_config = ConfigDict(extra="forbid")

    recipe: Literal[
        "scaffold", "scaffold-pruned", "predictor", "cot-sft", "oracle-cot", "long-sft", "answer-sft", "pretrain"
    ] = Field("scaffold", description="What to train (see rscaffold.recipes.RECIPES).")
    lr: float | None = Field(None, gt=0, description="Peak learning rate; null: 1e-4 with LoRA, 3e-3 otherwise.")
    batch_size: int = Field(8, ge=1, description="Sequences per micro-batch and process.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    epochs: float = Field(3.0, gt=0, description="Passes over the data when neither max_steps nor max_minutes is set.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps (overrides epochs and max_minutes).")
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="Token budget (prompt + completion, padding excluded): steps = budget / (mean sequence "
        "length x batch x accumulation x processes). Gives recipes an equal budget; max_steps overrides it.",
    )
    max_examples: int | None = Field(
        None, ge=1, description="Train on a seeded random subset of at most this many records (null: all)."
    )
    max_minutes: float | None = Field(None, gt=0, description="Wall-clock budget of the loop; the schedule ends there.")
    probe_steps: int = Field(4, ge=1, description="Micro-steps timed to size a max_minutes run.")
    warmup: float = Field(0.05, ge=0, lt=1, description="Share of steps with a linear warm-up.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="Learning-rate decay after warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    loss_form: Literal["lambda", "beta"] = Field(
        "lambda", description="lambda: L_token + lambda L_signal (paper v2); beta: (1-beta) L_token + beta L_signal."
    )
    signal_lambda: float = Field(1.0, ge=0, description="lambda of the lambda form.")
    signal_beta: float = Field(0.5, ge=0, le=1, description="beta of the beta form.")
    no_signal_head: bool = Field(False, description="Ablation: no signal head (lambda = 0).")
    no_signal_embedding: bool = Field(False, description="Ablation: no signal embedding layer.")
    signal_as_text: bool = Field(False, description="Ablation: the signal as a text prefix of each step, no SEL/head.")
    max_length: int = Field(1024, ge=16, description="Longest training sequence in tokens (longer ones are cut).")
    bucket: bool = Field(True, description="Batch sequences of similar length (less padding).")
    bf16: bool | None = Field(
        None, description="bf16 autocast; null: on a GPU that supports it (on CPUs it was slower)."
    )
    checkpoint_every: int = Field(
        0, ge=0, description="Save a resumable checkpoint every N optimizer steps (0: never)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    log_every: int = Field(10, ge=1, description="Optimizer steps between logged losses.")
    seed: int = Field(0, description="Seed of initialisation, data order and dropout.")
    trackers: list[str] = Field([], description="Accelerate trackers, e.g. [tensorboard] or [wandb].")
    init: str | None = Field(
        None, description="Predictor recipe: the trained proposer's folder (default RUN/students/scaffold)."
    )


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold train`` beyond --input/--output/--run-dir/--config."""
    p.add_argument("--recipe", choices=sorted(RECIPES), help="what to train (train.recipe)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output folder")

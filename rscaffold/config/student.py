"""Config sections of the student: the base model, the training sets, training and decoding."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RECIPES = ("scaffold", "scaffold-pruned", "predictor", "cot-sft", "oracle-cot", "long-sft", "answer-sft", "pretrain")
"""The training recipes (what each learns from: ``train.RECIPES``)."""
SOURCES = ("predictor-head", "predictor-generative", "golden", "golden-swap", "random", "none")
"""Where decoding takes each step's signal from (``decode.signal_source``); ``golden-swap`` is the
teacher's sequence with one signal replaced at a seeded step (evaluate's swap sensitivity)."""


class TinySizes(BaseModel):
    """Sizes of a from-scratch Llama-style student (about 1M parameters by default)."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(128, ge=8, description="Hidden size (d_model).")
    layers: int = Field(4, ge=1, description="Transformer layers.")
    heads: int = Field(4, ge=1, description="Attention heads (no grouped-query sharing).")
    intermediate: int = Field(384, ge=8, description="MLP hidden size.")
    max_positions: int = Field(1024, ge=16, description="Longest sequence the model supports.")


class ModelConfig(BaseModel):
    """Which base model the students start from, and how it is fine-tuned."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(
        "tiny",
        description="tiny (from scratch), testbed (the shipped tiny base), smollm2 (offline package), "
        "a hub id or a folder.",
    )
    tiny: TinySizes = Field(default_factory=TinySizes, description="Sizes when base=tiny.")
    vocab_size: int = Field(1024, ge=260, description="Byte-level BPE vocabulary of a tiny student.")
    lora: bool | None = Field(
        None, description="LoRA (true) or full fine-tuning (false); null: LoRA above 20M parameters."
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank (paper: 16).")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (paper: 16).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_targets: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names LoRA adapts.",
    )
    save: Literal["merged", "adapter"] = Field(
        "merged", description="With LoRA, save merged weights (self-contained) or the adapter alone."
    )

    def uses_lora(self, n_params: int) -> bool:
        """LoRA as configured; by default for pretrained bases (above 20M parameters), not tiny students."""
        return self.lora if self.lora is not None else n_params > 20_000_000


class BuildConfig(BaseModel):
    """How labelled traces become training sets."""

    model_config = ConfigDict(extra="forbid")

    prompt_template: str = Field(
        "Question: {question}\nThinking:\n", description="The student's prompt; {question} is the question text."
    )
    predictor_query: str = Field(
        "Next signal:", description="Appended to the context of a generative predictor's input."
    )
    signal_source: Literal["label", "true"] = Field(
        "label", description="label: the labelling stage's signals; true: the testbed's true signals (oracle)."
    )
    unlabelled: Literal["fallback", "drop"] = Field(
        "fallback", description="Steps with no signal: give them fallback_signal, or drop their trace."
    )
    fallback_signal: str = Field("reasoning", description="Signal of unlabelled steps when unlabelled=fallback.")
    pretrain_questions: int = Field(
        0, ge=0, description="Testbed questions (fresh seed) for pretrain.jsonl; 0 writes no pretrain set."
    )
    pretrain_drills: int = Field(2000, ge=0, description="Arithmetic drill documents in pretrain.jsonl.")
    pretrain_seed: int = Field(1000, description="Added to run.seed for the pretrain questions and drills.")
    pruned_contexts: bool = Field(
        False,
        description="Also write proposer_pruned.jsonl: the proposer records plus one per finished stage whose "
        "context keeps only the conclusions (the scaffold-pruned recipe trains on it).",
    )


class TrainConfig(BaseModel):
    """How a student is trained; the paper's recipe is LoRA r=16, lr 1e-4, batch 1 x 8, cosine, warmup 0.05."""

    model_config = ConfigDict(extra="forbid")

    recipe: Literal[RECIPES] = Field("scaffold", description="What to train (see rscaffold.train.RECIPES).")  # type: ignore[valid-type]
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
    signal_position: Literal["output", "input", "prefix"] = Field(
        "output",
        description="Where the signal enters a proposer: output (the paper: added to the last hidden state), "
        "input (added to the input embeddings of the step's tokens) or prefix (its name as text before the step); "
        "each with the signal head.",
    )
    max_length: int = Field(1024, ge=16, description="Longest training sequence in tokens (longer ones are cut).")
    bucket: bool = Field(True, description="Batch sequences of similar length (less padding).")
    bf16: bool | None = Field(
        None, description="bf16 autocast; null: on a GPU that supports it (on CPUs it was slower)."
    )
    checkpoint_every: int = Field(
        0, ge=0, description="Save a resumable checkpoint every N optimizer steps (0: never)."
    )
    checkpoint_minutes: float | None = Field(
        10.0, gt=0, description="Also save a checkpoint at least this often, in minutes (null: never by time)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    log_every: int = Field(10, ge=1, description="Optimizer steps between logged losses.")
    seed: int = Field(0, description="Seed of initialisation, data order and dropout.")
    trackers: list[str] = Field(
        [],
        description="Accelerate trackers of the losses, e.g. [tensorboard] (<output>/logs; a run: RUN/logs).",
    )
    init: str | None = Field(
        None,
        description="Predictor recipe: the trained proposer's folder (a run: its scaffold of the same seed).",
    )

    @model_validator(mode="after")
    def _one_text_prefix(self) -> TrainConfig:
        if self.signal_as_text and self.signal_position != "output":
            raise ValueError(
                "train.signal_as_text (the ablation without signal layers) and train.signal_position="
                f"{self.signal_position}: choose one (signal_position=prefix keeps the signal head)"
            )
        return self


class DecodeConfig(BaseModel):
    """How decode chooses signals, when it stops, and how much it may write."""

    model_config = ConfigDict(extra="forbid")

    signal_source: Literal[SOURCES] = Field(  # type: ignore[valid-type]
        "predictor-head", description="Where step signals come from: " + ", ".join(SOURCES) + "."
    )
    tau: float = Field(0.96, ge=0, le=1, description="Gate: answer when the predictor's confidence is below tau.")
    prune: bool = Field(False, description="Keep only the Conclusion steps of finished stages in the context.")
    max_steps: int = Field(24, ge=0, description="Steps before the answer is forced.")
    max_step_tokens: int = Field(96, ge=1, description="Tokens of one step before it is cut.")
    max_answer_tokens: int | None = Field(
        None,
        ge=1,
        description="Tokens of a guided answer (counted from its start, or from ###Answer: inside a step) before "
        "it is cut; None: the student's own, from its training answers (see answer_budget).",
    )
    max_tokens: int = Field(
        1024, ge=1, description="Tokens of thinking per question before the answer is forced (free decoding: all)."
    )
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        description="Tokens written in all (steps and answer) before the output is cut, stop reason 'length' "
        "(a served request's max_tokens); None: only the budgets above.",
    )
    batch_size: int = Field(8, ge=1, description="Questions decoded together.")
    temperature: float = Field(0.0, ge=0, description="0 is greedy; above 0 samples.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass when sampling.")
    seed: int = Field(0, description="Seed of sampling and of random signals.")
    device: str = Field("auto", description="auto (a GPU when there is one), cpu, cuda, ...")

"""Config sections of the experiment: what the pipeline trains, decodes and compares; evaluate,
report, serve."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rscaffold.config.student import RECIPES, SOURCES

TEST_SPLITS = ("test_id", "test_surface", "test_perturbed", "test_ood")
"""The testbed's test splits (METHOD.md section 7)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentStudent(_Section):
    """One student to train: a recipe and its own train.* / model.* deltas."""

    name: str = Field(description="Folder name under students/ (the seed is appended: <name>-s<seed>).")
    recipe: Literal[RECIPES] = Field(description="Recipe (see rscaffold.train.RECIPES).")  # type: ignore[valid-type]
    train: dict[str, Any] = Field({}, description="train.* keys that differ for this student.")
    model: dict[str, Any] = Field({}, description="model.* keys that differ for this student.")
    init: str | None = Field(None, description="Predictor: the experiment student it starts from (default: scaffold).")
    tokens_of: str | None = Field(
        None, description="Train on as many tokens as this experiment student saw (equal token budgets); null: train.*."
    )
    seeds: list[int] | None = Field(None, description="Seeds to train this student for; null: all of experiment.seeds.")


class ExperimentVariant(_Section):
    """One way of decoding one student."""

    name: str = Field(description="Variant name (in file names and tables).")
    student: str = Field(description="An experiment student's name.")
    source: Literal[SOURCES] = Field("none", description="Signal source (decode.signal_source).")  # type: ignore[valid-type]
    tau: float | None = Field(None, ge=0, le=1, description="Gate threshold; null: decode.tau.")
    prune: bool = Field(False, description="Keep only conclusions in the context (summaries-only).")
    predictor: str | None = Field(None, description="predictor-generative: the experiment student used as predictor.")
    splits: list[str] | None = Field(None, description="Splits to decode; null: all of experiment.splits.")
    limit: int | None = Field(None, ge=1, description="Decode only the first N questions of each split.")
    decode: dict[str, Any] = Field({}, description="Other decode.* keys for this variant.")


class Comparison(_Section):
    """A difference fixed in advance: row ``a`` minus row ``b`` (rows are ``<student>__<variant>``),
    paired over seeds and questions, on every split where both were decoded."""

    name: str = Field(description="What the comparison tests (printed).")
    a: str = Field(description="The row compared.")
    b: str = Field(description="The row it is compared against.")


def _default_students() -> list[ExperimentStudent]:
    return [
        ExperimentStudent(name="scaffold", recipe="scaffold"),
        ExperimentStudent(name="cot-sft", recipe="cot-sft"),
        ExperimentStudent(name="long-sft", recipe="long-sft"),
        ExperimentStudent(name="oracle-cot", recipe="oracle-cot"),
    ]


def _default_variants() -> list[ExperimentVariant]:
    """The demo's decodes, sized for 15 minutes on 2 CPU cores (decoding dominates there): the rows of
    comparisons (a) and (b) on the first 300 questions of every split, the signal-quality rows (c) on
    the first 100 of test_id."""
    t, many, few = ["test_id"], 300, 100
    return [
        ExperimentVariant(name="predictor-gate", student="scaffold", source="predictor-head", limit=many),
        ExperimentVariant(name="golden", student="scaffold", source="golden", splits=t, limit=few),
        ExperimentVariant(name="random", student="scaffold", source="random", splits=t, limit=few),
        ExperimentVariant(name="none", student="scaffold", source="none", splits=t, limit=few),
        ExperimentVariant(
            name="summaries", student="scaffold", source="predictor-head", prune=True, splits=t, limit=few
        ),
        ExperimentVariant(name="free", student="cot-sft", limit=many),
        ExperimentVariant(name="free", student="long-sft", limit=many),
        ExperimentVariant(name="free", student="oracle-cot", splits=t, limit=many),
    ]


SCAFFOLD = "scaffold__predictor-gate"


def _default_comparisons() -> list[Comparison]:
    return [
        Comparison(name="(a) mechanism: scaffold - long-thinking SFT, same traces", a=SCAFFOLD, b="long-sft__free"),
        Comparison(name="(b) paper's claim: scaffold - CoT SFT", a=SCAFFOLD, b="cot-sft__free"),
    ]


class ExperimentConfig(_Section):
    """What the pipeline trains, decodes and compares (`rscaffold run`; `rscaffold demo` runs the demo config)."""

    seeds: list[int] = Field([0], min_length=1, description="Training seeds; every student is trained per seed.")
    splits: list[str] = Field(list(TEST_SPLITS), description="Testbed splits decoded by variants without their own.")
    students: list[ExperimentStudent] = Field(default_factory=_default_students, description="Students to train.")
    variants: list[ExperimentVariant] = Field(default_factory=_default_variants, description="Decoding variants.")
    comparisons: list[Comparison] = Field(
        default_factory=_default_comparisons, description="Differences fixed in advance, reported whatever their sign."
    )
    signal_quality: list[str] = Field(
        [
            "scaffold__golden",
            "scaffold__random",
            "scaffold__none",
            "scaffold__summaries",
        ],
        description="(c) signal quality (the paper's Table 3): each row minus the scaffold's predictor + gate row.",
    )
    reference: str = Field(SCAFFOLD, description="The row the signal-quality rows are compared against.")
    probe: bool = Field(True, description="Print the base model's look-up probe per format (testbed bases).")


class GridConfig(_Section):
    """The signal-mechanism grid (``rscaffold grid``): the experiment run once per testbed setting."""

    settings: list[Literal["realistic", "clean", "informative"]] = Field(
        ["realistic", "clean", "informative"],
        min_length=1,
        description="Settings of the scripted teacher; each is a run in <grid folder>/<setting>.",
    )
    positions: list[str] = Field(
        ["output", "input", "prefix"],
        description="Experiment students that are the rows of the grid's table (one per signal position).",
    )
    sources: list[str] = Field(
        ["golden", "predictor-gate", "random", "none"], description="Their variants, in the table's order."
    )
    baselines: list[str] = Field(
        ["long-sft__free", "cot-sft__free"], description="Baseline rows (<student>__<variant>)."
    )
    predictability_traces: int = Field(
        1000, ge=0, description="Training traces per setting the reference predictor reads (0: leave it out)."
    )
    processes: int = Field(
        1,
        ge=1,
        description="Settings run at once, each in its own process (small students on CPUs or one GPU are bound "
        "by per-token overhead, so two processes on two cores do nearly twice the work).",
    )


class EvaluateConfig(BaseModel):
    """How answers are scored and how the intervals are drawn."""

    model_config = ConfigDict(extra="forbid")

    primary: Literal["strict", "flexible"] = Field(
        "strict", description="Which extraction sets the `correct` field of scored records."
    )
    bootstrap_samples: int = Field(1000, ge=10, description="Bootstrap resamples for the Pass@1 interval.")
    ci_level: float = Field(0.95, gt=0, lt=1, description="Coverage of the Pass@1 confidence interval.")
    seed: int = Field(0, description="Seed of the bootstrap resampling.")
    calibration_traces: int = Field(
        200,
        ge=0,
        description="Golden traces per split the signal head reads for its calibration (the first ones; 0: none).",
    )
    trackers: list[str] | None = Field(
        None,
        description="Accelerate trackers of Pass@1 per student, variant and split (RUN/logs); null: train.trackers.",
    )


class ReportConfig(BaseModel):
    """What the report shows."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("Reasoning Scaffolding: evaluation report", description="Heading of the report page.")
    viewer_questions: int = Field(
        100, ge=0, description="Questions per decoded file in the trace viewer (the page grows with it)."
    )


class FaultConfig(BaseModel):
    """Injected faults, each a share of requests (drawn in this order, after the delay)."""

    model_config = ConfigDict(extra="forbid")

    share_429: float = Field(0.0, ge=0, le=1, description="Answered 429 Too Many Requests with Retry-After.")
    retry_after_s: float = Field(1.0, ge=0, description="The Retry-After value sent with a 429 (seconds).")
    share_500: float = Field(0.0, ge=0, le=1, description="Answered 500 Internal Server Error.")
    share_truncated: float = Field(0.0, ge=0, le=1, description="Answered 200 with the JSON cut in half.")
    share_garbage: float = Field(0.0, ge=0, le=1, description="Answered 200 with a body that is not JSON.")
    share_dropped: float = Field(0.0, ge=0, le=1, description="Answered 200, then the connection drops mid-body.")
    delay_ms: float = Field(0.0, ge=0, description="Fixed latency added to every request.")
    delay_jitter_ms: float = Field(0.0, ge=0, description="Uniform random latency added on top.")
    judge_invalid_share: float = Field(0.0, ge=0, le=1, description="First judge askings answered invalidly.")
    seed: int = Field(0, description="Seed of the fault draws.")


class ServeConfig(BaseModel):
    """`serve`: the OpenAI-compatible server."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind (0.0.0.0 exposes it to the network).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free one).")
    token_env: str | None = Field(
        None, min_length=1, description="Environment variable holding the bearer token to require (set, not empty)."
    )
    insecure: bool = Field(False, description="Serve beyond loopback with no token (logs a warning); else refuse.")
    questions: str | None = Field(None, description="Testbed questions (file or folder) the scripted teacher knows.")
    hf_model: str | None = Field(None, description="Folder of a local Hugging Face causal LM to host.")
    student: str | None = Field(
        None, description="Folder of a trained student to host (signal-guided decoding, steps streamed)."
    )
    batch_size: int = Field(16, ge=1, description="Requests a hosted student decodes at once (one running batch).")
    max_queue: int = Field(
        256, ge=0, description="Requests that may wait for a free row; one more gets 503 with Retry-After."
    )
    train_traces: str | None = Field(
        None, description="Labelled training traces: lets requests ask a hosted student for random signals."
    )
    faults: FaultConfig = Field(default_factory=FaultConfig, description="Fault injection for tests and drills.")

"""Config sections of the data stages: testbed, teachers (generate), import, label, judge, cache."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rscaffold.prompts import JUDGE_PROMPTS, PROMPTS
from rscaffold.signals import LEXICONS, load_lexicon
from rscaffold.testbed import phrasing

CACHE_PATH = "~/.cache/rscaffold/responses.sqlite"
SECRET_FIELDS = frozenset({"api_key_env", "base_url"})
"""Fields where a key typed by mistake would land: their errors never echo the value."""
SHIPPED_LABELLERS = ("default", "distant")
"""Learned labellers shipped in ``rscaffold/label/labellers/``, by name: the context labeller (the default
policy's) and the distant labeller it replaced."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_file(path: str) -> bool:
    """``Path(path).is_file()``, False for a name the system refuses (too long, a NUL byte)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


class TestbedConfig(BaseModel):
    """Sizes and difficulty knobs of the testbed; the defaults are the easy setting that a student of
    about 1M parameters learns within minutes on a CPU (METHOD.md section 7)."""

    __test__ = False  # not a pytest test class, despite the name
    model_config = ConfigDict(extra="forbid")

    train: int = Field(2000, ge=0, description="Number of training problems.")
    test_id: int = Field(500, ge=0, description="Test problems with the training operation counts.")
    test_ood: int = Field(500, ge=0, description="Test problems with more operations than in training.")
    test_surface: int = Field(500, ge=0, description="Test problems worded with held-out wording.")
    perturbed_groups: int = Field(100, ge=0, description="test_id problems that get perturbed variants.")
    perturbed_variants: int = Field(4, ge=1, description="Variants per perturbed group.")
    train_ops: tuple[int, int] = Field((1, 3), description="Operations per problem, all but test_ood.")
    ood_ops: tuple[int, int] = Field((4, 5), description="Operations per problem in test_ood.")
    distractors: tuple[int, int] = Field((0, 2), description="Distractor facts per problem.")
    surface_distractors: tuple[int, int] = Field((3, 4), description="Distractor facts in test_surface.")
    op_weights: dict[Literal["add", "sub", "mul", "div"], float] = Field(
        default_factory=lambda: {"add": 1.0, "sub": 1.0, "mul": 1.0, "div": 0.5},
        description="Relative frequency of each operation; 0 turns one off.",
    )
    constant_share: float = Field(
        0.5, ge=0, le=1, description="Share of operations whose other operand is a written number."
    )
    reuse_share: float = Field(0.2, ge=0, le=1, description="Named operands that reuse an earlier quantity.")
    max_value: int = Field(19, ge=4, description="Largest value of any quantity or constant.")
    min_given: int = Field(1, ge=0, description="Smallest given value.")
    max_addend: int = Field(9, ge=1, description="Largest constant added or subtracted.")
    max_factor: int = Field(4, ge=2, description="Largest constant multiplier or divisor.")
    names: Literal["letters", "words"] = Field(
        "letters", description="Single-letter names or words (people, containers)."
    )
    name_pool_size: int = Field(20, ge=2, description="How many names of the style's pool are used.")
    surface_names: int = Field(6, ge=1, description="Names of the pool held out for test_surface.")
    fact_order: Literal["dependency", "shuffled"] = Field(
        "dependency", description="Facts in dependency order or shuffled."
    )

    @model_validator(mode="after")
    def _check(self) -> TestbedConfig:
        for name in ("train_ops", "ood_ops", "distractors", "surface_distractors"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi or (name.endswith("ops") and lo < 1):
                raise ValueError(f"{name}: want 0 <= low <= high (ops >= 1), got [{lo}, {hi}]")
        pool = len(phrasing.NAME_POOLS[self.names])
        if self.name_pool_size > pool:
            raise ValueError(f"name_pool_size: {self.name_pool_size} exceeds the {pool} {self.names} names")
        # A problem with n operations has at most 2n + 1 needed quantities, each with its own name.
        most = 2 * max(self.train_ops[1], self.ood_ops[1]) + 1 + self.distractors[1] + 1
        surface = 2 * self.train_ops[1] + 1 + self.surface_distractors[1]
        if self.name_pool_size < surface:
            raise ValueError(f"name_pool_size: a test_surface problem may need {surface} names")
        if self.name_pool_size - self.surface_names < most:
            raise ValueError(
                f"name_pool_size - surface_names = {self.name_pool_size - self.surface_names} training "
                f"names, but a problem may need {most}; raise name_pool_size or lower the operation or "
                "distractor counts"
            )
        if self.perturbed_groups > self.test_id:
            raise ValueError(f"perturbed_groups: {self.perturbed_groups} exceeds test_id ({self.test_id})")
        if sum(self.op_weights.values()) <= 0:
            raise ValueError("op_weights: at least one operation needs a positive weight")
        return self


class ScriptedConfig(BaseModel):
    """The scripted teacher's setting and the shares that shape its traces (each a probability per trace or
    per step); the ``informative`` setting replaces the coin flips by rules and ignores most shares."""

    model_config = ConfigDict(extra="forbid")

    setting: Literal["realistic", "clean", "informative"] = Field(
        "realistic",
        description="realistic: coin-flip signals, slips and misreads; clean: no slips, misreads or hypothetical "
        "numbers; informative: each step's kind follows from what the student sees (experiments/TESTBED_SETTINGS.md).",
    )
    keyword_free_share: float = Field(
        0.25, ge=0, le=1, description="Steps opening with no keyword of the paper's table."
    )
    other_keyword_share: float = Field(
        0.06, ge=0, le=1, description="Steps opening with a keyword of another signal ('Wait, 5 + 3 is 8')."
    )
    detour_share: float = Field(0.2, ge=0, le=1, description="Traces with a wrong value, then a correction.")
    wrong_share: float = Field(0.1, ge=0, le=1, description="Traces whose final answer is wrong.")
    restate_facts: bool = Field(True, description="Computing steps restate the facts and values they use.")
    plan_share: float = Field(0.8, ge=0, le=1, description="Traces with a planning step.")
    result_share: float = Field(0.5, ge=0, le=1, description="Intermediate results in a step of their own.")
    addition_share: float = Field(0.3, ge=0, le=1, description="Results followed by an elaboration.")
    example_share: float = Field(0.5, ge=0, le=1, description="Traces with an illustrating example.")
    recheck_share: float = Field(0.5, ge=0, le=1, description="Traces that re-check one result.")
    opinion_share: float = Field(
        0.7, ge=0, le=1, description="Traces with an opinion (about a distractor where one exists)."
    )
    contrast_share: float = Field(
        0.6, ge=0, le=1, description="Traces with a Contrast step (any detour adds one more)."
    )

    @model_validator(mode="after")
    def _check(self) -> ScriptedConfig:
        if self.keyword_free_share + self.other_keyword_share > 1:
            raise ValueError("keyword_free_share + other_keyword_share must not exceed 1")
        return self


class ClientConfig(BaseModel):
    """An OpenAI-compatible endpoint and how politely to use it (shared by generate and judge)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field("http://127.0.0.1:8000/v1", description="Server URL up to /v1 (`rscaffold serve` default).")
    model: str = Field("scripted", description="Model name the server knows (deepseek-reasoner, QwQ-32B, ...).")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key (never the key itself)."
    )
    temperature: float = Field(0.6, ge=0, description="Sampling temperature (R1's recommended 0.6).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(32768, gt=0, description="Most tokens the server may generate per request.")
    seed: int | None = Field(None, description="Sampling seed sent to the server (sample i gets seed + i).")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra request fields, sent as they are.")
    max_concurrency: int = Field(16, gt=0, description="Requests in flight at once.")
    rpm: float | None = Field(None, gt=0, description="Requests-per-minute limit (none: unlimited).")
    tpm: float | None = Field(None, gt=0, description="Tokens-per-minute limit (prompt + completion; none: unlimited).")
    timeout_s: float = Field(600.0, gt=0, description="Seconds to wait for one response (reasoning is slow).")
    connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a connection.")
    max_tries: int = Field(6, gt=0, description="Tries per request before the item is recorded as failed.")
    backoff_base_s: float = Field(1.0, ge=0, description="First back-off; doubles per try, jittered.")
    backoff_max_s: float = Field(60.0, ge=0, description="Longest back-off between tries.")
    max_retry_after_s: float = Field(120.0, ge=0, description="Longest Retry-After the client honours.")
    price_input_per_m: float | None = Field(None, ge=0, description="Dollars per million prompt tokens (ledger).")
    price_output_per_m: float | None = Field(None, ge=0, description="Dollars per million completion tokens.")
    cache: str | None = Field(CACHE_PATH, description="Response cache (SQLite); none sends every request.")
    retry_failed: bool = Field(False, description="Try again the requests an earlier run recorded as failed.")

    # A key typed into either field would be written into the run folder's config.yaml; the
    # messages say what is wrong without repeating the value (see SECRET_FIELDS).
    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(
                "expected the name of an environment variable (letters, digits, _), not the key itself: "
                "export RSCAFFOLD_KEY=... and set api_key_env=RSCAFFOLD_KEY"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, value: str) -> str:
        try:
            url = urlsplit(value)
        except ValueError:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("expected an http(s) URL up to /v1, such as http://127.0.0.1:8000/v1")
        if "@" in url.netloc or url.query or url.fragment:
            raise ValueError(
                "credentials, a query or a fragment in the URL are refused; put the key in the environment "
                "variable named by api_key_env"
            )
        return value


class ApiTeacherConfig(ClientConfig):
    """`generate.api`: the teacher over an OpenAI-compatible API."""

    prompt: str = Field("paper-v1", description=f"Generation prompt version: {', '.join(PROMPTS)}.")
    n: int = Field(1, gt=0, description="Samples per question (each its own request and trace).")


class HfTeacherConfig(BaseModel):
    """`generate.hf`: a local Hugging Face causal LM as the teacher."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="Folder (or hub name, if cached) of the causal LM.")
    device: str = Field("cpu", description="Torch device: cpu, cuda, cuda:1, mps.")
    dtype: str = Field("auto", description="Weights dtype: auto, float32, bfloat16, float16.")
    prompt: str = Field("paper-v1", description=f"Generation prompt version: {', '.join(PROMPTS)}.")
    max_new_tokens: int = Field(4096, gt=0, description="Most tokens generated per question.")
    temperature: float = Field(0.6, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    batch_size: int = Field(8, gt=0, description="Questions generated together (left-padded).")


class GenerateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teacher: Literal["scripted", "openai", "hf"] = Field(
        "scripted", description="Teacher backend: scripted (testbed), openai (any OpenAI-compatible API), hf (local)."
    )
    split: str = Field("train", description="Testbed split a run generates traces for.")
    filter_wrong: bool = Field(True, description="Drop traces whose final answer disagrees with the gold answer.")
    scripted: ScriptedConfig = Field(default_factory=ScriptedConfig, description="The scripted teacher.")
    api: ApiTeacherConfig = Field(
        default_factory=ApiTeacherConfig, description="A teacher behind an OpenAI-compatible API."
    )
    hf: HfTeacherConfig = Field(default_factory=HfTeacherConfig, description="A local Hugging Face causal LM teacher.")


class ImportFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field("id", description="Field holding the question id (else the line number is used).")
    question: str = Field("question", description="Field holding the question text.")
    thinking: str = Field("trace", description="Field holding the thinking text (format shared or split).")
    answer: str = Field("answer_text", description="Field holding the answer text (format shared or split).")
    text: str = Field("text", description="Field holding `<think>...</think>answer` (format think).")
    final_answer: str = Field("final_answer", description="Field holding the extracted final answer.")
    gold: str = Field("gold_answer", description="Field holding the gold answer.")
    teacher: str = Field("model", description="Field naming the model that wrote the trace.")


class ImportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        None, description="Traces the import stage of a run reads: JSONL, Parquet, a datasets folder or a hub id."
    )
    split: str | None = Field(None, description="Split of a datasets folder or hub dataset (--split).")
    format: Literal["auto", "shared", "think", "split"] = Field(
        "auto",
        description="shared: the shared traces' schema; think: one text field with a <think> block; "
        "split: separate reasoning and answer fields; auto: decided per record.",
    )
    fields: ImportFields = Field(default_factory=ImportFields, description="Field names in the input records.")
    teacher: str | None = Field(None, description="Teacher name to record when the file names none.")


class LabelConfig(BaseModel):
    """The labelling policy: keywords, then the judge and/or the learned labeller."""

    model_config = ConfigDict(extra="forbid")

    lexicon: str = Field("paper", description="Stage-1 keyword lexicon: paper (the paper's table), extended, or a TSV.")
    judge: bool = Field(False, description="Call the stage-2 LLM judge (config section `judge`) after the keywords.")
    judge_min_confidence: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Judge labels reported below this confidence are dropped (the stage-1 label returns).",
    )
    learned: str | None = Field(
        "default",
        description="Learned labeller: default (the shipped context labeller), distant (the earlier shipped one), "
        "a folder, or null for none.",
    )
    learned_min_confidence: float = Field(
        0.0, ge=0, le=1, description="The learned labeller labels an unlabelled step only at or above this probability."
    )
    learned_overrule: float | None = Field(
        0.0,
        ge=0,
        le=1,
        description="The learned labeller replaces a keyword label it disagrees with at or above this probability; "
        "null: never. 0 (whenever it disagrees): chosen with the shipped labeller by cross-validation on the judged "
        "train split.",
    )

    @field_validator("lexicon")
    @classmethod
    def _known_lexicon(cls, value: str) -> str:
        if value not in LEXICONS and not is_file(value):
            raise ValueError(f"expected one of {', '.join(LEXICONS)} or an existing TSV file, got {value!r}")
        load_lexicon(value)  # a malformed file fails here, before any stage runs (LexiconError names the line)
        return value

    @field_validator("learned")
    @classmethod
    def _known_labeller(cls, value: str | None) -> str | None:
        if value in (None, "none", "null", ""):
            return None
        if value not in SHIPPED_LABELLERS and not is_file(str(Path(value) / "labeller.json")):
            names = ", ".join(SHIPPED_LABELLERS)
            raise ValueError(f"expected {names}, null or a folder with labeller.json, got {value!r}")
        return value


class JudgeConfig(ClientConfig):
    """`judge`: the LLM judge of labelling stage 2 (an OpenAI-compatible endpoint)."""

    model: str = Field("scripted-judge", description="Judge model (the paper: GPT-4.1).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (greedy for a judge).")
    max_tokens: int = Field(1024, gt=0, description="Most tokens per judge answer.")
    prompt: str = Field("judge-v1", description=f"Judge prompt version: {', '.join(JUDGE_PROMPTS)}.")
    max_invalid_tries: int = Field(3, gt=0, description="Times a step is asked again after an invalid answer.")
    context_chars: int = Field(6000, gt=0, description="Most characters of preceding thinking shown (the latest).")
    only_unlabelled: bool = Field(False, description="Judge only steps without a keyword label (no agreement).")
    window: int = Field(8, gt=0, description="Traces judged at once (output keeps the input order).")


class CacheConfig(BaseModel):
    """The `rscaffold cache` command."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(CACHE_PATH, description="SQLite file of the response cache (shared by generate and judge).")

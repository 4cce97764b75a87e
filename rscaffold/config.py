"""The typed config tree: defaults in classes, deltas in YAML, dotted overrides on the command line.

``load_config("x.yaml", ["label.lexicon=extended"])`` merges the YAML's deltas and the overrides
over the defaults; an unknown key is an error with a did-you-mean, a bad value an error that names
its dotted key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rscaffold.base_models import ModelConfig
from rscaffold.build import BuildConfig
from rscaffold.cache import CacheConfig
from rscaffold.decode import DecodeConfig
from rscaffold.demo import DemoConfig
from rscaffold.evaluate import EvaluateConfig
from rscaffold.judge import JudgeConfig
from rscaffold.label import LabelConfig
from rscaffold.recipes import TrainConfig
from rscaffold.report import ReportConfig
from rscaffold.schema import InputError
from rscaffold.serve import ServeConfig
from rscaffold.teachers.hf_local import HfTeacherConfig
from rscaffold.teachers.openai_compat import ApiTeacherConfig
from rscaffold.testbed.problems import TestbedConfig
from rscaffold.testbed.teacher import ScriptedConfig

STAGES = ("testbed", "generate", "import", "segment", "label", "stats")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RunConfig(Section):
    dir: str | None = Field(None, description="Run folder for `rscaffold run`; default runs/<time>.")
    seed: int = Field(0, description="Seed of every random choice in the run.")
    stages: list[Literal[STAGES]] = Field(  # type: ignore[valid-type]
        ["testbed", "generate", "segment", "label", "stats"],
        description="Stages `rscaffold run` chains, in order.",
    )


class ImportFields(Section):
    id: str = Field("id", description="Field holding the question id (else the line number is used).")
    question: str = Field("question", description="Field holding the question text.")
    thinking: str = Field("trace", description="Field holding the thinking text (format shared or split).")
    answer: str = Field("answer_text", description="Field holding the answer text (format shared or split).")
    text: str = Field("text", description="Field holding `<think>...</think>answer` (format think).")
    final_answer: str = Field("final_answer", description="Field holding the extracted final answer.")
    gold: str = Field("gold_answer", description="Field holding the gold answer.")
    teacher: str = Field("model", description="Field naming the model that wrote the trace.")


class ImportConfig(Section):
    path: str | None = Field(None, description="Trace file (JSONL or Parquet) the import stage of a run reads.")
    format: Literal["auto", "shared", "think", "split"] = Field(
        "auto",
        description="shared: the shared traces' schema; think: one text field with a <think> block; "
        "split: separate reasoning and answer fields; auto: decided per record.",
    )
    fields: ImportFields = Field(default_factory=ImportFields, description="Field names in the input records.")
    teacher: str | None = Field(None, description="Teacher name to record when the file names none.")


class GenerateConfig(Section):
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


class Config(Section):
    """The whole configuration of a run; every stage reads its own section."""

    run: RunConfig = Field(default_factory=RunConfig)
    testbed: TestbedConfig = Field(default_factory=TestbedConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    import_: ImportConfig = Field(default_factory=ImportConfig, alias="import")
    label: LabelConfig = Field(default_factory=LabelConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)


def _parse_value(text: str) -> Any:
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):  # YAML 1.1 reads "3e-5" as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML."""
    key, eq, text = override.partition("=")
    if not eq or not key.strip():
        raise InputError(f"override {override!r}: expected KEY=VALUE, e.g. label.lexicon=extended")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"override {override!r}: {part!r} holds a value, not a section")
        node = child
    node[leaf] = _parse_value(text)


def _check_keys(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> None:
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known: {', '.join(fields)}"
            raise InputError(f"config key '{dotted}' is unknown{hint}")
        sub = fields[key].annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, dict):
            _check_keys(sub, value, f"{dotted}.")


def _validation_message(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    key = ".".join(str(p) for p in first["loc"])
    return f"config key '{key}': {first['msg']} (got {first.get('input')!r})"


def shipped_config(name: str) -> Path:
    """The path of a config shipped with the package (``demo``)."""
    return Path(__file__).parent / "configs" / f"{name}.yaml"


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file's deltas, then the dotted overrides, validated.

    ``path`` may also name a config shipped with the package (``demo``).
    """
    data: dict[str, Any] = {}
    if path is not None and not Path(path).exists() and shipped_config(str(path)).exists():
        path = shipped_config(str(path))
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(f"{path}: cannot read config ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise InputError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError(f"{path}: expected a mapping of config sections, got {type(loaded).__name__}")
        data = loaded or {}
    for override in overrides:
        apply_override(data, override)
    _check_keys(Config, data)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise InputError(_validation_message(e)) from None


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML, with section names as they are written in files."""
    return yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True), sort_keys=False)

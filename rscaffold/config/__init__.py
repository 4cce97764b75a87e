"""The typed config tree: defaults in classes, deltas in YAML, dotted overrides on the command line.

``load_config("x.yaml", ["label.lexicon=extended"])`` merges the YAML's deltas and the overrides
over the defaults; an unknown key is an error with a did-you-mean, a bad value an error that names
its dotted key.
"""

from __future__ import annotations

import difflib
import reprlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rscaffold.config.data import (
    CACHE_PATH,
    SECRET_FIELDS,
    ApiTeacherConfig,
    CacheConfig,
    ClientConfig,
    GenerateConfig,
    HfTeacherConfig,
    ImportConfig,
    ImportFields,
    JudgeConfig,
    LabelConfig,
    ScriptedConfig,
    TestbedConfig,
)
from rscaffold.config.experiment import (
    TEST_SPLITS,
    Comparison,
    EvaluateConfig,
    ExperimentConfig,
    ExperimentStudent,
    ExperimentVariant,
    FaultConfig,
    GridConfig,
    ReportConfig,
    ServeConfig,
)
from rscaffold.config.student import RECIPES, SOURCES, BuildConfig, DecodeConfig, ModelConfig, TinySizes, TrainConfig
from rscaffold.schema import InputError

__all__ = [
    "CACHE_PATH",
    "RECIPES",
    "SOURCES",
    "STAGES",
    "TEST_SPLITS",
    "ApiTeacherConfig",
    "BuildConfig",
    "CacheConfig",
    "ClientConfig",
    "Comparison",
    "Config",
    "DecodeConfig",
    "EvaluateConfig",
    "ExperimentConfig",
    "ExperimentStudent",
    "ExperimentVariant",
    "FaultConfig",
    "GenerateConfig",
    "GridConfig",
    "HfTeacherConfig",
    "ImportConfig",
    "ImportFields",
    "JudgeConfig",
    "LabelConfig",
    "ModelConfig",
    "ReportConfig",
    "RunConfig",
    "ScriptedConfig",
    "ServeConfig",
    "TestbedConfig",
    "TinySizes",
    "TrainConfig",
    "apply_override",
    "dump_config",
    "load_config",
    "shipped_config",
]

STAGES = (
    "testbed",
    "generate",
    "import",
    "segment",
    "label",
    "stats",
    "build",
    "train",
    "decode",
    "evaluate",
    "report",
)
"""The pipeline's stages in order (``rscaffold.pipeline``); ``import`` reads trace files instead of
``generate``."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BenchmarkInput(Section):
    """A benchmark whose questions the decode stage reads instead of the testbed's splits."""

    name: str = Field(description="Benchmark (rscaffold.benchmarks: gsm8k, math500, svamp, ...).")
    split: str | None = Field(None, description="Its split; null: the benchmark's test split.")
    limit: int | None = Field(None, ge=1, description="Only its first N questions.")
    path: str | None = Field(
        None, description="Its file or folder; null: $RSCAFFOLD_BENCHMARKS/<name>, else the hub (online)."
    )


class RunConfig(Section):
    dir: str | None = Field(None, description="Run folder for `rscaffold run`; default runs/<time>.")
    benchmark: BenchmarkInput | None = Field(
        None, description="Decode every variant on this benchmark instead of the testbed splits (--benchmark)."
    )
    seed: int = Field(0, description="Seed of every random choice in the run.")
    stages: list[Literal[STAGES]] = Field(  # type: ignore[valid-type]
        [s for s in STAGES if s != "import"], description="Stages `rscaffold run` chains, in this order."
    )


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
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    grid: GridConfig = Field(default_factory=GridConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)


def _parse_value(key: str, text: str) -> Any:
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except (yaml.YAMLError, RecursionError) as e:
        raise InputError(f"override '{key}': the value is not valid YAML ({_first_line(e)})") from None
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
    # The messages name the key, never the value: a value may be a key typed by mistake.
    key = key.strip()
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"override '{key}': {part!r} holds a value, not a section")
        node = child
    node[leaf] = _parse_value(key, text)


def _check_keys(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> None:
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known: {', '.join(fields)}"
            raise InputError(f"config key {dotted!r} is unknown{hint}")
        sub = fields[key].annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, dict):
            _check_keys(sub, value, f"{dotted}.")


def _validation_message(error: ValidationError) -> str:
    """The first error, one line: the dotted key, what is wrong, and the value unless the message
    holds it already or the field may hold a key typed by mistake (``SECRET_FIELDS``)."""
    first = error.errors(include_url=False)[0]
    key = repr(".".join(str(p) for p in first["loc"]))
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    if SECRET_FIELDS.intersection(map(str, first["loc"])) or (isinstance(value, str) and value in message):
        return f"config key {key}: {message}"
    return f"config key {key}: {message} (got {reprlib.repr(value)})"


def _first_line(error: Exception) -> str:
    if isinstance(error, RecursionError):  # the parser recursed once per level of [ or {
        return "nested too deeply"
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _read_yaml(path: str | Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read config ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except (yaml.YAMLError, RecursionError) as e:  # RecursionError: nesting deeper than the parser goes
        raise InputError(f"{path}: invalid YAML: {_first_line(e)}") from None


def _exists(path: str | Path) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def shipped_config(name: str) -> Path:
    """The path of a config shipped with the package (``demo``)."""
    return Path(__file__).parent / f"{name}.yaml"


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file's deltas, then the dotted overrides, validated.

    ``path`` may also name a config shipped with the package (``demo``).
    """
    data: dict[str, Any] = {}
    if path is not None and not _exists(path) and _exists(shipped_config(str(path))):
        path = shipped_config(str(path))
    if path is not None:
        loaded = _read_yaml(path)
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

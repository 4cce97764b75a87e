from __future__ import annotations

import pytest

from rscaffold.config import Config, apply_override, dump_config, load_config, shipped_config
from rscaffold.schema import InputError


def test_defaults_and_overrides():
    cfg = load_config(None, ["label.lexicon=extended", "run.seed=7", "generate.filter_wrong=false"])
    assert (cfg.label.lexicon, cfg.run.seed, cfg.generate.filter_wrong) == ("extended", 7, False)
    assert load_config().label.lexicon == "paper"


def test_yaml_deltas_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("label:\n  lexicon: extended\nimport:\n  format: think\n")
    cfg = load_config(path, ["import.fields.text=output"])
    assert (cfg.label.lexicon, cfg.import_.format, cfg.import_.fields.text) == ("extended", "think", "output")


def test_override_values_are_typed():
    data: dict = {}
    for o in ["a.lr=3e-5", "a.n=3", "a.on=true", "a.name=x y", "a.list=[1, 2]"]:
        apply_override(data, o)
    assert data == {"a": {"lr": 3e-5, "n": 3, "on": True, "name": "x y", "list": [1, 2]}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("label.lexicom=paper", "config key 'label.lexicom' is unknown; did you mean 'label.lexicon'?"),
        ("lable.lexicon=paper", "did you mean 'label'"),
        ("label.lexicon=nosuch", "config key 'label.lexicon': Value error, expected one of paper, extended"),
        ("run.seed=abc", "config key 'run.seed'"),
        ("import.format=xml", "config key 'import.format'"),
        ("novalue", "expected KEY=VALUE"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_config(None, [override])


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a list\n")
    with pytest.raises(InputError, match="expected a mapping"):
        load_config(path)
    with pytest.raises(InputError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_every_shipped_config_loads_and_round_trips(tmp_path):
    configs = sorted(shipped_config("demo").parent.glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        again = tmp_path / path.name
        again.write_text(dump_config(cfg))
        assert load_config(again) == cfg
    assert load_config("demo") == load_config(shipped_config("demo"))


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                yield from walk(sub)
            elif model is not Config:
                yield f"{model.__name__}.{name}", field.description

    missing = [name for name, doc in walk(Config) if not doc]
    assert missing == []

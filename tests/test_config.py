from dataclasses import dataclass, field

import pytest

from obliviate.config import apply_overrides, from_dict, load_yaml, to_dict
from obliviate.errors import ConfigError
from obliviate.whp.pipeline import WHPConfig


def test_whp_config_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: some/model\nlabels:\n  alpha: 3\ntarget:\n  sources: a.txt\n")
    data = apply_overrides(load_yaml(path), ["labels.alpha=7.5", "finetune.epochs=1", "labels.soft=true"])
    config = from_dict(WHPConfig, data)
    assert config.labels.alpha == 7.5 and config.labels.soft is True
    assert config.target.sources == ["a.txt"]
    assert config.finetune.epochs == 1.0
    assert config.finetune.learning_rate == WHPConfig().finetune.learning_rate  # defaults kept
    assert from_dict(WHPConfig, to_dict(config)) == config


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'labels.alfa'"):
        from_dict(WHPConfig, {"labels": {"alfa": 3}})
    with pytest.raises(ConfigError, match="unknown setting 'modle'"):
        from_dict(WHPConfig, {"modle": "x"})


def test_duplicate_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: a\nmodel: b\n")
    with pytest.raises(ConfigError, match="duplicate key 'model'"):
        load_yaml(path)


def test_bad_types_and_files(tmp_path):
    with pytest.raises(ConfigError, match="labels.alpha' must be a number"):
        from_dict(WHPConfig, {"labels": {"alpha": "lots"}})
    with pytest.raises(ConfigError, match="must be an integer"):
        from_dict(WHPConfig, {"target": {"context_length": 1.5}})
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["novalue"])


def test_optional_and_nested():
    @dataclass
    class Inner:
        x: int = 1

    @dataclass
    class Outer:
        inner: Inner = field(default_factory=Inner)
        cap: int | None = None

    assert from_dict(Outer, {"inner": {"x": "4"}, "cap": None}) == Outer(Inner(4), None)
    assert from_dict(Outer, {"cap": 3}).cap == 3


def test_example_configs_are_valid():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "examples").glob("*.yaml")):
        data = load_yaml(path)
        data.pop("method"), data.pop("out")
        from_dict(WHPConfig, data)


def _leaves(data, prefix=""):
    """``{"a.b": value}`` for every leaf of a nested dict."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("override", ["finetune.learning_rate=2e-5", "reinforce.train.batch_size=2",
                                      "target.heldout_fraction=0.2", "labels.top_k=3", "eval.batch_size=3"])
def test_an_override_changes_exactly_its_key(override):
    key, value = override.split("=")
    default = _leaves(to_dict(WHPConfig()))
    changed = _leaves(to_dict(from_dict(WHPConfig, apply_overrides({}, [override]))))
    assert {k for k in default if default[k] != changed[k]} == {key}
    assert changed[key] == type(default[key])(value)


def test_section_defaults_survive_partial_sections():
    from obliviate.unlearn import UnlearnConfig

    config = from_dict(WHPConfig, {"finetune": {"learning_rate": 2e-5}, "reinforce": {"train": {"seed": 1}}})
    assert config.finetune.epochs == 2 and config.reinforce.train.epochs == 3
    assert config.reinforce.train.learning_rate == 3e-5
    # the documented 256-token blocks of `obliviate unlearn` hold when only the sources are given
    unlearn = from_dict(UnlearnConfig, {"method": "npo", "forget": {"sources": ["f.txt"]}, "retain": {"sources": "r"}})
    assert unlearn.forget.context_length == unlearn.retain.context_length == 256


@pytest.mark.parametrize("override, message", [
    ("finetune.learning_rate=0", "'finetune.learning_rate' must be > 0"),
    ("finetune.learning_rate=-1e-5", "'finetune.learning_rate' must be > 0"),
    ("finetune.batch_size=0", "'finetune.batch_size' must be >= 1"),
    ("reinforce.train.grad_accum=0", "'reinforce.train.grad_accum' must be >= 1"),
    ("finetune.epochs=0", "'finetune.epochs' must be > 0"),
    ("finetune.max_steps=-1", "'finetune.max_steps' must be >= 0"),
    ("finetune.max_grad_norm=-1", "'finetune.max_grad_norm' must be >= 0"),
    ("target.heldout_fraction=1", "'target.heldout_fraction' must be in \\[0, 1\\)"),
    ("target.heldout_fraction=-0.1", "'target.heldout_fraction' must be in \\[0, 1\\)"),
    ("finetune.warmup_ratio=1.5", "'finetune.warmup_ratio' must be in \\[0, 1\\]"),
    ("labels.top_k=0", "labels.top_k must be an integer >= 1"),
    ("labels.alpha=nan", "'labels.alpha' must be a finite number"),
    ("labels.alpha=.inf", "'labels.alpha' must be a finite number"),
    ("finetune.mixed_precision=fp8", "'finetune.mixed_precision' must be one of no, bf16, fp16"),
    ("target.context_length=4", "'target.context_length' must be >= 16"),
    ("lora.r=0", "'lora.r' must be >= 1"),
    ("lora.save=both", "'lora.save' must be one of merged, adapter"),
    ("eval.max_new_tokens=0", "'eval.max_new_tokens' must be >= 1"),
])
def test_out_of_range_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(WHPConfig, apply_overrides({}, [override]))


def test_configs_built_in_python_are_validated_too():
    from obliviate.config import validate
    from obliviate.train import TrainConfig

    with pytest.raises(ConfigError, match="'finetune.learning_rate' must be > 0"):
        validate(WHPConfig(finetune=TrainConfig(learning_rate=-1.0)))
    with pytest.raises(ConfigError, match="'finetune.max_steps' must be >= 0"):
        validate(WHPConfig(finetune=TrainConfig(max_steps=-3)))


def test_a_preset_is_a_layer_under_the_file_the_options_and_set(tmp_path):
    from obliviate.settings import resolve
    from obliviate.whp.presets import WHP_PRESETS

    for name, preset in WHP_PRESETS.items():
        config = resolve("whp", preset=name)
        assert config.finetune.learning_rate == preset["finetune"]["learning_rate"]
        assert config.labels.alpha == preset["labels"]["alpha"]
        assert config.reinforce.train.epochs == preset["reinforce"]["train"]["epochs"]
    preset = WHP_PRESETS["demo"]
    path = tmp_path / "run.yaml"
    path.write_text("labels:\n  alpha: 11\n")
    config = resolve("whp", preset="demo", config_file=path, options={"finetune": {"epochs": 7}},
                     overrides=["finetune.learning_rate=3e-6"])
    assert config.labels.alpha == 11 and config.finetune.epochs == 7 and config.finetune.learning_rate == 3e-6
    assert config.reinforce.train.learning_rate == preset["reinforce"]["train"]["learning_rate"]  # the rest kept
    assert config.finetune.warmup_ratio == preset["finetune"]["warmup_ratio"]


def test_an_unknown_preset_is_one_line_before_any_work(tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "run"
    code = main(["whp", "--preset", "huge", "--target", str(tmp_path / "t.txt"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: unknown WHP preset 'huge': use one of"), err
    assert not out.exists()

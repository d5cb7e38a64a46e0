"""The method registry: every registered method states its facts, every list of methods is derived
from the registry, and every numeric method setting is checked when the method is built."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import pytest

from obliviate.config import from_dict
from obliviate.errors import ConfigError
from obliviate.methods import FACTS, METHODS, RETAIN_USES, UNLEARNING_METHODS, make_method, method_reference, \
    methods_table, uses_retain
from obliviate.methods._common import Paper

DOCS = Path(__file__).resolve().parents[1] / "docs"


# --- facts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(METHODS))
def test_every_registered_method_declares_every_fact(name):
    method_class, config_class = METHODS[name]
    missing = [fact for fact in FACTS if fact not in vars(method_class)]
    assert not missing, f"method '{name}' ({method_class.__name__}) must declare {missing} in its class body"
    assert isinstance(method_class.unlearning, bool)
    assert method_class.retain_text in RETAIN_USES
    assert isinstance(method_class.frozen_reference, bool)
    fields = {f.name for f in dataclasses.fields(config_class)}
    if method_class.retain_text == "optional":  # uses_retain reads the retain weight
        assert "alpha" in fields
    assert method_class.search_coefficient is None or method_class.search_coefficient in fields
    assert isinstance(method_class.summary, str) and method_class.summary.strip()
    paper = method_class.paper
    assert paper is None or (isinstance(paper, Paper) and re.fullmatch(r"\d{4}\.\d{4,5}", paper.arxiv)
                             and paper.title and paper.authors and 2000 < paper.year < 2100)
    assert method_class.__doc__ and method_class.__doc__.strip(), "the docs table takes the objective from the docstring"
    config_class()  # the defaults pass the settings checks


def test_finetune_and_whp_are_registered_but_not_unlearning_methods():
    assert {"finetune", "whp"} <= set(METHODS) and not {"finetune", "whp"} & set(UNLEARNING_METHODS)


def test_one_registration_per_method():
    classes = [cls for cls, _ in METHODS.values()]
    configs = [config for _, config in METHODS.values()]
    assert len(set(classes)) == len(set(configs)) == len(METHODS)
    for method_class, config_class in METHODS.values():
        assert isinstance(method_class(config_class()).config, config_class)


# --- derived lists -----------------------------------------------------------------------------

def test_unlearning_methods_and_uses_retain_are_the_registry_facts():
    assert UNLEARNING_METHODS == {name: cls.retain_text for name, (cls, _) in METHODS.items() if cls.unlearning}
    for name, use in UNLEARNING_METHODS.items():
        config = make_method(name).config
        assert uses_retain(name, config) == (use != "unused")
        if use == "optional":
            assert not uses_retain(name, dataclasses.replace(config, alpha=0.0))


def test_meta_search_coefficients_are_the_registry_facts():
    from obliviate.meta_search import COEFFICIENT_SETTINGS, searchable_methods

    assert COEFFICIENT_SETTINGS == {name: cls.search_coefficient for name, (cls, _) in METHODS.items()
                                    if cls.unlearning and cls.search_coefficient}
    assert set(COEFFICIENT_SETTINGS) <= set(searchable_methods())
    text = (DOCS / "meta_search.md").read_text(encoding="utf-8")
    for name, setting in COEFFICIENT_SETTINGS.items():
        assert f"`{name}`: `{setting}`" in text
    supported = re.search(r"The search supports every method whose config has both `layer` and `alpha`: (.*?)\.",
                          text, re.S).group(1)
    assert re.findall(r"`(\w+)`", supported) == searchable_methods()


def test_cli_help_lists_every_method():
    from obliviate.cli import build_parser
    from obliviate.meta_search import COEFFICIENT_SETTINGS, searchable_methods

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest: a.help for a in subparsers.choices["unlearn"]._actions}
    assert options["method"] == f"unlearning method: {', '.join(UNLEARNING_METHODS)}"
    options = {a.dest: a.help for a in subparsers.choices["meta-search"]._actions}
    assert options["method"] == f"method with layer and alpha settings: {', '.join(searchable_methods())}"
    assert options["coefficients"] == "steering coefficients to try (" + \
        ", ".join(f"{name}: {setting}" for name, setting in COEFFICIENT_SETTINGS.items()) + ")"
    command_help = next(c.help for c in subparsers._choices_actions if c.dest == "meta-search")
    assert f"of {'/'.join(searchable_methods())} by" in command_help


def test_docs_table_is_the_registry():
    text = (DOCS / "methods.md").read_text(encoding="utf-8")
    assert methods_table() in text, "regenerate the table in docs/methods.md with obliviate.methods.methods_table()"
    for name in METHODS:
        assert f"| `{name}` |" in methods_table()


@pytest.mark.parametrize("name", list(METHODS))
def test_model_card_cites_the_method_paper(name, tmp_path):
    from obliviate.reporting import write_model_card

    (tmp_path / "model").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"method": name}))
    card = write_model_card(tmp_path).read_text(encoding="utf-8")
    assert f"`{name}`: {method_reference(name)}." in card
    paper = METHODS[name][0].paper
    if paper is not None:
        assert f"arXiv:{paper.arxiv}" in card and paper.url in card and paper.title in card
        assert ("not a reproduction" in card) == paper.our_design


def test_model_card_of_an_unregistered_method(tmp_path):
    from obliviate.reporting import write_model_card

    (tmp_path / "model").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"method": "something_else"}))
    assert "`something_else`: see the obliviate documentation." in write_model_card(tmp_path).read_text()


@pytest.mark.parametrize("name", list(UNLEARNING_METHODS))
def test_frozen_reference_fact_matches_prepare(name, tiny_model, tiny_tokenizer):
    import torch

    method = make_method(name)
    if name == "probe_direction":  # preparing it needs probes or the shared data; it builds no reference
        assert not hasattr(method, "reference") and not METHODS[name][0].frozen_reference
        return
    if hasattr(method, "prepare"):
        method.prepare(tiny_model, tiny_tokenizer)
    reference = getattr(method, "reference", None)
    assert isinstance(reference, torch.nn.Module) == METHODS[name][0].frozen_reference


# --- settings checks ---------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD_SETTINGS = [  # (method, setting, value, message)
    ("grad_diff", "gamma", NAN, "method.gamma must be a finite number > 0, not nan"),
    ("grad_diff", "gamma", 0, "method.gamma must be a finite number > 0, not 0.0: it weighs the forget term: 0 "
                              "forgets nothing"),
    ("grad_diff", "alpha", -1.0, "method.alpha must be a finite number >= 0, not -1.0"),
    ("kl_retain", "gamma", -0.5, "method.gamma must be a finite number > 0, not -0.5"),
    ("kl_retain", "alpha", "inf", "method.alpha must be a finite number >= 0, not inf"),
    ("npo", "beta", 0, "method.beta must be a finite number > 0, not 0.0: for the beta -> 0 limit use method "
                       "gradient_ascent"),
    ("npo", "beta", "nan", "method.beta must be a finite number > 0, not nan"),
    ("npo", "alpha", -INF, "method.alpha must be a finite number >= 0, not -inf"),
    ("npo", "precompute_reference", "maybe", "'method.precompute_reference' must be true or false, not 'maybe'"),
    ("simnpo", "beta", -2.5, "method.beta must be a finite number > 0, not -2.5"),
    ("simnpo", "gamma", INF, "method.gamma must be a finite number, not inf"),
    ("simnpo", "alpha", NAN, "method.alpha must be a finite number >= 0, not nan"),
    ("rmu", "layer", -1, "method.layer must be an integer >= 0, not -1: decoder layers are counted from 0"),
    ("rmu", "params", "(", "method.params '(' is not a valid regular expression"),
    ("rmu", "steering_coeff", 0, "method.steering_coeff must be a finite number > 0, not 0.0"),
    ("rmu", "steering_coeff", NAN, "method.steering_coeff must be a finite number > 0, not nan"),
    ("rmu", "alpha", -100, "method.alpha must be a finite number >= 0, not -100.0"),
    ("adaptive_rmu", "layer", -3, "method.layer must be an integer >= 0, not -3"),
    ("adaptive_rmu", "params", "[", "method.params '[' is not a valid regular expression"),
    ("adaptive_rmu", "beta", 0.0, "method.beta must be a finite number > 0, not 0.0"),
    ("adaptive_rmu", "alpha", INF, "method.alpha must be a finite number >= 0, not inf"),
    ("cosine_rmu", "layer", -1, "method.layer must be an integer >= 0, not -1"),
    ("cosine_rmu", "params", "*", "method.params '*' is not a valid regular expression"),
    ("cosine_rmu", "alpha", NAN, "method.alpha must be a finite number >= 0, not nan"),
    ("cosine_rmu", "retain_kind", "l1", "method.retain_kind must be 'mse' or 'cosine', not 'l1'"),
    ("probe_direction", "layers", [2, -1], "method.layers[1] must be an integer >= 0, not -1"),
    ("probe_direction", "layers", [], "method.layers is empty: give at least one layer"),
    ("probe_direction", "probe_texts_per_class", 1, "method.probe_texts_per_class must be an integer >= 2, not 1"),
    ("probe_direction", "alpha", -1, "method.alpha must be a finite number >= 0, not -1.0"),
    ("probe_direction", "forget_weight", 0, "method.forget_weight must be a finite number > 0, not 0.0"),
    ("probe_direction", "target", "mean", "method.target must be 'zero' or 'benign', not 'mean'"),
    ("probe_direction", "params", "(", "method.params '(' is not a valid regular expression"),
]
# Settings with no range to check: seeds (any int seeds torch and random) and paths (checked when read).
UNCHECKED = {"seed", "probes", "data_dir"}


@pytest.mark.parametrize(("name", "setting", "value", "message"), BAD_SETTINGS,
                         ids=[f"{n}.{s}={v}" for n, s, v, _ in BAD_SETTINGS])
def test_bad_setting_is_one_clear_line(name, setting, value, message):
    with pytest.raises(ConfigError) as raised:
        make_method(name, {setting: value})
    text = str(raised.value)
    assert "\n" not in text
    if str(value) in ("nan", "inf", "-inf"):  # non-finite values are refused when read, before the range check
        assert text.startswith(f"'method.{setting}' must be a finite number")
    else:
        assert text.startswith(message)
    value = float(value) if value in ("nan", "inf") else value
    with pytest.raises(ConfigError, match=re.escape(message.split(", not ")[0])):  # the Python API checks too
        METHODS[name][1](**{setting: value})


def test_every_setting_of_every_method_has_a_bad_value_case():
    covered = {(name, setting) for name, setting, _, _ in BAD_SETTINGS}
    for name in UNLEARNING_METHODS:
        for f in dataclasses.fields(METHODS[name][1]):
            assert f.name in UNCHECKED or (name, f.name) in covered, f"add a bad-value case for {name}.{f.name}"


def test_good_edge_values_pass():
    assert make_method("npo", {"alpha": 0, "beta": 1e-6}).config.alpha == 0
    assert make_method("rmu", {"layer": 0, "alpha": 0, "params": r"layers\.0\."}).config.layer == 0
    assert make_method("simnpo", {"gamma": -1.0}).config.gamma == -1.0  # a margin may be negative
    assert make_method("probe_direction", {"layers": [0, 3], "probe_texts_per_class": 2}).config.layers == [0, 3]


@pytest.mark.parametrize("name", ["rmu", "adaptive_rmu", "cosine_rmu"])
def test_layer_beyond_the_model_is_a_config_error_at_prepare(name, tiny_model, tiny_tokenizer):
    depth = len(tiny_model.model.layers)
    method = make_method(name, {"layer": depth})
    with pytest.raises(ConfigError, match=rf"^method.layer: layer {depth} is out of range: the model has {depth} "
                                          rf"layers; use 0 to {depth - 1}$"):
        method.prepare(tiny_model, tiny_tokenizer)
    assert all(p.requires_grad for p in tiny_model.parameters()), "nothing frozen before the check"


def test_probe_layers_beyond_the_model_are_a_config_error_at_prepare(tiny_model, tiny_tokenizer):
    method = make_method("probe_direction", {"layers": [1, 40]})
    with pytest.raises(ConfigError, match="^method.layers: layer 40 is out of range: the model has 4 layers"):
        method.prepare(tiny_model, tiny_tokenizer)


def test_cli_reports_a_bad_setting_on_one_line(tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "run"
    assert main(["unlearn", "--method", "npo", "--set", "method.beta=0", "--forget", str(tmp_path / "f.txt"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: method.beta must be a finite number > 0, not 0.0: for the beta -> 0 limit use " \
                          "method gradient_ascent"
    assert not out.exists()


# --- WHP label and meta-search settings ---------------------------------------------------------

@pytest.mark.parametrize(("setting", "value", "message"), [
    ("alpha", "nan", "'labels.alpha' must be a finite number, not 'nan'"),
    ("alpha", -5, "labels.alpha must be a finite number >= 0, not -5.0: the WHP paper uses about 5"),
    ("top_k", 0, "labels.top_k must be an integer >= 1, not 0"),
    ("batch_size", 0, "labels.batch_size must be an integer >= 1, not 0"),
])
def test_bad_label_setting(setting, value, message):
    from obliviate.whp.labels import LabelConfig

    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        from_dict(LabelConfig, {setting: value}, where="labels")


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("trials", 0, "search.trials must be an integer >= 1, not 0"),
    ("inner_steps", -1, "search.inner_steps must be an integer >= 1, not -1"),
    ("layers", [-1], "search.layers[0] must be an integer >= 0, not -1"),
    ("layers", [], "search.layers is empty"),
    ("alphas", [1, "nan"], "'search.alphas[1]' must be a finite number, not 'nan'"),
    ("alphas", [], "search.alphas is empty"),
    ("learning_rates", [0], "search.learning_rates[0] must be a finite number > 0, not 0.0"),
    ("learning_rates", [], "search.learning_rates is empty"),
    ("coefficients", [-1], "search.coefficients[0] must be a finite number > 0, not -1.0"),
    ("coefficients", [], "search.coefficients is empty"),
    ("retain_penalty", "inf", "'search.retain_penalty' must be a finite number, not 'inf'"),
    ("strategy", "grid", "search.strategy must be 'random' or 'successive_halving', not 'grid'"),
])
def test_bad_search_setting(setting, value, message):
    from obliviate.meta_search import MetaSearchConfig

    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        from_dict(MetaSearchConfig, {setting: value}, where="search")


def test_search_layer_beyond_the_model_fails_before_any_inner_run(tiny_model, tiny_tokenizer, monkeypatch):
    from obliviate import meta_search as meta_search_module
    from obliviate.corpus import Blocks
    from obliviate.meta_search import MetaSearchConfig, meta_search

    monkeypatch.setattr(meta_search_module, "_inner_run", lambda *a, **k: pytest.fail("an inner run started"))
    blocks = Blocks(train=[[1, 2, 3, 4]], heldout=[[5, 6, 7, 8]])
    with pytest.raises(ConfigError, match="^search.layers: layer 9 is out of range: the model has 4 layers"):
        meta_search(tiny_model, tiny_tokenizer, blocks, blocks, "rmu", MetaSearchConfig(layers=[1, 9]))


def test_readme_names_every_unlearning_method():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = [name for name in UNLEARNING_METHODS if f"`{name}`" not in readme]
    assert not missing, f"README.md does not name {missing}"

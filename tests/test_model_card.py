"""The model card as the Hub reads it: ``huggingface_hub.ModelCard.load`` on the card obliviate writes.

Most run folders here are written by hand (no model); the last tests finish a tiny run through the
real CLI and read its card.
"""

from __future__ import annotations

import json

import pytest
from huggingface_hub import EvalResult, ModelCard

from obliviate.cli import main
from obliviate.config import from_dict
from obliviate.errors import ConfigError
from obliviate.reporting import write_model_card
from obliviate.reporting.model_card import CardSettings, base_model_facts
from test_reporting import make_run
from test_run_folder import _unlearn, texts  # noqa: F401  (texts is a fixture)

TASK = {"task_type": "text-generation", "task_name": "Machine unlearning"}


def _set_manifest(run, **changes):
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        manifest[key] = value
    path.write_text(json.dumps(manifest))


def _result(suite, name, value, group, **args):
    return EvalResult(**TASK, dataset_type=suite, dataset_name=suite, metric_type=name, metric_name=name,
                      metric_value=value, metric_config=group, metric_args=args)


def test_full_run_card_is_hub_metadata_with_its_results(tmp_path):
    run = make_run(tmp_path / "hp")
    card = ModelCard.load(write_model_card(run))
    data = card.data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.base_model_relation == "finetune"
    assert data.license == "apache-2.0" and data.language == ["en"]
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert data.tags == ["obliviate", "machine-unlearning", "whp"]
    assert data.model_name == "hp"
    # the unlearned model's measured metrics, exactly as metrics.json has them; the skipped one is left out
    assert data.eval_results == [
        _result("harry_potter", "familiarity", 0.2, "forget", n=2, stderr=0.08, higher_is_better=False),
        _result("harry_potter", "reference_probability", 0.05, "forget", n=1, higher_is_better=False),
        _result("harry_potter", "general_accuracy", 0.55, "utility", n=100, stderr=0.02, higher_is_better=True),
        _result("harry_potter", "perplexity", 22.0, "utility", higher_is_better=False),
        _result("harry_potter", "retain_qa", 0.7, "retain", higher_is_better=True),
    ]


def test_plain_language_section_says_only_what_the_files_say(tmp_path):
    run = make_run(tmp_path / "hp")
    _set_manifest(run, stages={"finetune": {"steps": 20, "tokens": 40960, "seconds": 118.2, "output": "model"},
                               "labels": {"seconds": 3.0}})
    text = write_model_card(run).read_text(encoding="utf-8")
    section = text.split("## What was removed, how well, and what it cost")[1].split("\n## ")[0]
    assert "**What was removed:** knowledge of the target corpus hp.txt, with the method `whp`" in section
    assert "arXiv:2310.02238" in section
    assert ("- **familiarity** (the share of completions that show the knowledge; lower is more forgotten): "
            "0.8 before, 0.2 after (change -0.6, better), over 2 prompts.") in section
    assert "0.5 before, 0.05 after (change -0.45, better), over 1 prompt." in section
    assert ("- **general_accuracy** (the accuracy on general-ability benchmarks; higher is better): 0.6 before, "
            "0.55 after (change -0.05, worse), over 100 items.") in section
    assert "- **retain_qa** (the accuracy on questions, scored by log-likelihood; higher is better): 0.7 after " \
           "(not measured before)." in section
    assert "- **training, stage `finetune`**: 20 optimizer steps, 40,960 tokens, 118.2 s." in section
    assert "stage `labels`" not in section  # no training facts recorded for it
    assert "Not measured: toxicity (judge unreachable)." in section
    (run / "metrics.json").unlink()
    text = write_model_card(run).read_text(encoding="utf-8")
    assert "not measured: the run folder has no metrics.json" in text
    assert "model-index" not in text and "model_name" not in text


def test_adapter_run_card(tmp_path):
    run = make_run(tmp_path / "lora", with_model=False)
    (run / "model").mkdir()
    (run / "model" / "adapter_config.json").write_text("{}")
    _set_manifest(run, method="npo", hyperparameters={"lora": {"enabled": True, "save": "adapter"}})
    path = write_model_card(run)
    data = ModelCard.load(path).data
    assert data.library_name == "peft" and data.base_model_relation == "adapter"
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.tags == ["obliviate", "machine-unlearning", "npo", "lora"]
    text = path.read_text(encoding="utf-8")
    assert "PeftModel.from_pretrained(base, path)" in text
    assert 'AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in text


def test_local_base_is_never_the_base_model(tmp_path):
    base = tmp_path / "my-base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    run = make_run(tmp_path / "local")
    _set_manifest(run, base_model={"spec": str(base), "weights_sha256": "cd" * 32})
    path = write_model_card(run)
    data = ModelCard.load(path).data
    assert data.base_model is None and data.get("base_model_relation") is None
    assert data.license == "unknown" and data.language is None
    text = path.read_text(encoding="utf-8")
    assert "# local: my-base (a local model) with knowledge removed by obliviate" in text
    assert "set it with `--license ID`" in text
    # the base folder's own card gives license and languages
    (base / "README.md").write_text("---\nlicense: mit\nlanguage: [fr, en]\n---\n# my base\n")
    data = ModelCard.load(write_model_card(run)).data
    assert data.license == "mit" and data.language == ["fr", "en"] and data.base_model is None
    assert "- license: `mit`, from the base model's README.md" in (run / "model" / "README.md").read_text()


def test_card_settings_override_the_base(tmp_path):
    run = make_run(tmp_path / "set")
    _set_manifest(run, hyperparameters={"card": {"license": "cc-by-4.0", "language": ["de"],
                                                 "datasets": ["org/forget-set"]}})
    data = ModelCard.load(write_model_card(run)).data
    assert (data.license, data.language, data.datasets) == ("cc-by-4.0", ["de"], ["org/forget-set"])
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_hub_bases_and_datasets_from_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--org--base" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (cache / "models--org--base" / "refs").mkdir()
    (cache / "models--org--base" / "refs" / "main").write_text("abc123")
    (snapshot / "README.md").write_text("---\nlicense: other\nlicense_name: base-license\n"
                                        "license_link: https://example.org/license\n---\n")
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    facts = base_model_facts("org/base")  # a hub id: its card from the cache
    assert (facts.hub_id, facts.license, facts.license_name) == ("org/base", "other", "base-license")
    assert base_model_facts(str(snapshot)).hub_id == "org/base"  # a folder inside the cache is that hub model

    corpus = cache / "datasets--org--books" / "snapshots" / "def" / "train.txt"
    corpus.parent.mkdir(parents=True)
    corpus.write_text("text")
    run = make_run(tmp_path / "from-hub")
    _set_manifest(run, base_model={"spec": "org/base"}, hyperparameters={"forget": {"sources": [str(corpus)]}})
    data = ModelCard.load(write_model_card(run)).data
    assert data.base_model == "org/base" and data.datasets == ["org/books"]
    assert (data.license, data.license_name, data.license_link) == ("other", "base-license",
                                                                    "https://example.org/license")


def test_every_embedded_model_has_its_origin():
    from obliviate.models import EMBEDDED_MODELS, EMBEDDED_ORIGINS

    assert set(EMBEDDED_ORIGINS) == set(EMBEDDED_MODELS)
    for name, origin in EMBEDDED_ORIGINS.items():
        facts = base_model_facts(name)
        assert (facts.hub_id, facts.license, facts.language) == (origin["hub_id"], origin["license"],
                                                                 origin["language"])


@pytest.mark.parametrize("key, value, rule", [
    ("license", "Apache 2.0", "a Hub license id"),
    ("language", ["english!"], "a list of ISO 639 codes"),
    ("datasets", ["not a hub id"], "a list of Hub ids"),
])
def test_bad_card_settings(key, value, rule):
    with pytest.raises(ConfigError, match=f"'card.{key}' must be {rule}"):
        from_dict(CardSettings, {key: value}, where="card")


# ---- a finished tiny run, through the CLI ----

def test_finished_run_card_has_the_model_index(tiny_model_dir, texts, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    card = ModelCard.load(out / "model" / "README.md")
    metrics = json.loads((out / "metrics.json").read_text())["evaluations"]["unlearned"]
    measured = {n: m for n, m in metrics["metrics"].items() if "skipped" not in m}
    assert measured and [r.metric_type for r in card.data.eval_results] == list(measured)
    for result in card.data.eval_results:
        metric = measured[result.metric_type]
        assert result.metric_value == metric["value"] and result.metric_args["n"] == metric["n"]
        assert result.dataset_name == metrics["suite"]["name"]
        assert result.dataset_revision == metrics["suite"].get("sha256")
    assert card.data.base_model is None and card.data.license == "unknown"  # a local base with no card
    assert card.data.tags == ["obliviate", "machine-unlearning", "gradient_ascent"]

    # a new license rewrites the manifest and the card, and retrains nothing
    manifest = (out / "manifest.json").read_text()
    capsys.readouterr()
    assert main(_unlearn(tiny_model_dir, texts, out, "--license", "mit")) == 0
    err = capsys.readouterr().err
    assert "[unlearn] already complete" in err and "[card] settings changed" in err
    assert ModelCard.load(out / "model" / "README.md").data.license == "mit"
    manifest = (out / "manifest.json").read_text()
    # the same command again leaves the manifest alone (a signature over it stays valid)
    assert main(_unlearn(tiny_model_dir, texts, out, "--license", "mit")) == 0
    assert "[card]" not in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == manifest


def test_bad_license_option_is_one_line(tiny_model_dir, texts, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out, "--license", "My License")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: 'card.license' must be a Hub license id such as apache-2.0, mit or other (lower case, "
                   "no spaces), not 'My License': fix it in the config or with --set card.license=..."]
    assert not out.exists()


def test_gguf_base_license_from_its_metadata(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "base.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_license("mit")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    facts = base_model_facts(str(path))
    assert (facts.hub_id, facts.license, facts.source) == (None, "mit", "the GGUF file's general.license")
    (tmp_path / "plain.gguf").write_bytes(b"not gguf")
    assert base_model_facts(str(tmp_path / "plain.gguf")).license is None

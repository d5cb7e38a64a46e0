"""``obliviate demo``: the embedded model forgets Harry Potter, end to end, with files shipped in the package.

It synthesizes a Harry Potter corpus from the model itself (the original work also added
generated text to the books), uses the package's small anchored-terms dictionary and prompt
sets, runs the four WHP stages and prints the before/after table.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from obliviate.config import from_dict, to_dict
from obliviate.whp.pipeline import WHPConfig, WHPRun
from obliviate.whp.presets import preset_layer

# Sized to finish in well under 15 minutes on 2 CPU cores (see benchmarks/RESULTS.md): the
# synthesis, then the WHP preset "demo" (obliviate.whp.presets).
DEMO_SETTINGS = {
    "synthesize": {"n_samples": 48, "max_new_tokens": 160, "temperature": 0.9, "batch_size": 16, "seed": 0},
    **preset_layer("demo"),
}


def resource(*parts: str) -> Path:
    """Path of a file shipped in ``obliviate/resources``."""
    return Path(str(resources.files("obliviate").joinpath("resources", *parts)))


def demo_settings(out: Path, model: str) -> dict:
    """What the demo's WHPConfig is built from (``from_dict(WHPConfig, ...)``)."""
    hp = resource("demo", "harry_potter")
    settings = {k: v for k, v in DEMO_SETTINGS.items() if k != "synthesize"}
    settings["target"] = {**settings["target"], "sources": [str(out / "synthesized_corpus.jsonl")]}
    return {
        "model": model,
        "anchors": str(hp / "anchors.yaml"),
        **settings,
        "eval": {"probe_prompts": str(hp / "probe_prompts.jsonl"),
                 "familiarity_prompts": str(hp / "familiarity_prompts.jsonl"),
                 "general_text": [str(resource("demo", "general_text.txt"))]},
    }


def demo_config(out: Path, model: str) -> WHPConfig:
    return from_dict(WHPConfig, demo_settings(out, model))


def run_demo(out="runs/demo", model: str = "smollm2-135m", overwrite: bool = False) -> dict:
    """Run the demo into ``out``; returns the before/after metrics. With ``$OBLIVIATE_SIGN_CERT`` and
    ``$OBLIVIATE_SIGN_KEY`` set, the finished run is signed (C2PA sidecar manifests, ``obliviate sign``)."""
    from obliviate.models import load_model
    from obliviate.provenance import sign_run, signing_from_environment
    from obliviate.synthesize import load_seed_prompts, synthesize_records, write_corpus

    signing = signing_from_environment()  # checked before the run, used after it
    out = Path(out)
    config = demo_config(out, model)
    run = WHPRun(config, out, overwrite=overwrite)
    run.folder.check_writable()
    with run.folder.lock():  # the synthesis writes into the folder too
        run.folder.init(to_dict(run.config), overwrite=overwrite, kind=run.KIND)
        corpus = out / "synthesized_corpus.jsonl"
        if not corpus.exists():
            print("[synthesize] sampling a Harry Potter corpus from the model itself ...", file=sys.stderr)
            s = DEMO_SETTINGS["synthesize"]
            loaded = load_model(model)
            seeds = load_seed_prompts(resource("demo", "harry_potter", "seed_prompts.txt"))
            texts = synthesize_records(loaded.model, loaded.tokenizer, seeds, s["n_samples"],
                                      max_new_tokens=s["max_new_tokens"], temperature=s["temperature"],
                                      batch_size=s["batch_size"], seed=s["seed"])
            write_corpus(texts, corpus)
            del loaded
        evaluations = run.run()
        if signing:
            for sidecar in sign_run(out, *signing):
                print(f"signed {sidecar.removesuffix('.c2pa')}: {sidecar}")
    return evaluations

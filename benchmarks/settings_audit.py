"""Settings audit after the override fix (issue 8): which benchmark configs the fixed merge changes.

Before commit 0771b02, ``config.from_dict`` rebuilt a nested section from its class's defaults, so
a section named in the settings lost the defaults of the section's own default instance (e.g.
``WHPConfig.finetune = TrainConfig(epochs=2, ...)``). For every config each benchmark builds with
its default command line (compare_methods: every method and task at --steps 8 and 24;
toxicity_methods: every method at --steps 12; whp_harry_potter; the demo that demo_timing runs;
the evaluation suites they and eval_cost load), and for the command lines the README shows, this
resolves the settings with the merge before the fix (src/obliviate/config.py at 53e2723, read
from git into a temporary module) and with the current ``obliviate.config.from_dict``, and
compares ``dataclasses.asdict`` of both. Unlearning
configs also compare the method's own config (``make_method`` builds it with ``from_dict``).
No model is loaded, no file is written; it runs in seconds (the suites' data files are read for
their hashes, from --data-dir).

    python benchmarks/settings_audit.py [--data-dir ../shared/data]

A differing ``epochs`` whose section sets ``max_steps > 0`` is marked "(inert: max_steps set)":
``obliviate.train.train`` derives the step count from epochs only when max_steps is 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import subprocess
import sys
import types
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
OLD_COMMIT = "53e2723"  # the parent of 0771b02, the override fix
SMOLLM2_LAYERS = 30  # SmolLM2-135M's depth (toxicity_methods reads it from the loaded model)

sys.path.insert(0, str(BENCHMARKS))


def old_config_module(commit: str = OLD_COMMIT) -> types.ModuleType:
    """``obliviate.config`` as it was at ``commit``, loaded from git into a module of its own."""
    try:
        source = subprocess.run(["git", "show", f"{commit}:src/obliviate/config.py"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"cannot read src/obliviate/config.py at {commit} from git in {REPO}: {exc}") from exc
    module = types.ModuleType(f"obliviate_config_{commit}")
    module.__file__ = f"{commit}:src/obliviate/config.py"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own file, from git
    return module


def flatten(data, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and method_settings dicts stay values)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "method_settings":
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@contextlib.contextmanager
def merge_in_use(from_dict):
    """Make ``from_dict`` the merge of the CLI's resolution (``obliviate.settings``) and of
    ``obliviate.config`` (imported at call time elsewhere)."""
    import obliviate.config
    import obliviate.settings

    modules = (obliviate.config, obliviate.settings)
    saved = [module.from_dict for module in modules]
    for module in modules:
        module.from_dict = from_dict
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.from_dict = original


# ---- resolvers: (from_dict) -> flat dict of the resolved settings ----

def whp(settings: dict):
    from obliviate.whp.pipeline import WHPConfig

    return lambda from_dict: flatten(dataclasses.asdict(from_dict(WHPConfig, settings)))


def unlearn(settings: dict):
    from obliviate.methods import METHODS
    from obliviate.unlearn import UnlearnConfig

    def resolve(from_dict):
        config = from_dict(UnlearnConfig, settings)
        method = from_dict(METHODS[config.method][1], dict(config.method_settings), "method")
        return {**flatten(dataclasses.asdict(config)), **flatten(dataclasses.asdict(method), "method_config.")}
    return resolve


def whp_inference(settings: dict):
    """What WHP at inference time uses: the settings it reads from the WHP run's config.yaml
    (``_read_whp_run``), and the settings of the reinforced model it reuses from that run."""
    from obliviate.whp.labels import LabelConfig
    from obliviate.whp.pipeline import WHPConfig

    def resolve(from_dict):
        written = dataclasses.asdict(from_dict(WHPConfig, settings))  # the whp run's config.yaml
        labels = from_dict(LabelConfig, written["labels"], "labels")
        return {"model": written["model"], "labels.alpha": labels.alpha,
                "trust_remote_code": written["trust_remote_code"],
                **flatten({"target": written["target"], "reinforce": written["reinforce"]})}
    return resolve


def suite(path, data_dir: Path):
    """``load_suite(path)``: each metric's spec is built with ``from_dict``."""
    from obliviate.evaluation import suite as suite_module

    def resolve(from_dict):
        with merge_in_use(from_dict):  # load_suite imports from_dict from obliviate.config when called
            loaded = suite_module.load_suite(path, data_dir=data_dir)
        return {k: v for spec in loaded.metrics
                for k, v in flatten(dataclasses.asdict(spec), f"metrics.{spec.name}.").items()}
    return resolve


def through_cli(argv: list[str], function):
    """Resolve ``obliviate ARGV`` through the CLI's own config function."""
    from obliviate.cli import build_parser

    args = build_parser().parse_args(argv)

    def resolve(from_dict):
        with merge_in_use(from_dict):
            return flatten(dataclasses.asdict(function(args)))
    return resolve


def run_file(path: Path):
    """``obliviate run PATH``: cmd_run drops ``out`` and ``method: whp``, then builds a WHPConfig."""
    from obliviate.config import load_yaml
    from obliviate.whp.pipeline import WHPConfig

    data = load_yaml(path)
    data.pop("out", None)
    assert data.pop("method", "whp") == "whp", path
    return lambda from_dict: flatten(dataclasses.asdict(from_dict(WHPConfig, data)))


# ---- the cases: (benchmark, config, resolver) ----

def compare_methods_cases(data_dir: Path, steps=(8, 24)) -> list:
    """Every method and task, at --steps 8 (RESULTS.md: both tasks) and 24 (RESULTS.md: harry_potter)."""
    import compare_methods

    found = []
    for n in steps:
        args = compare_methods.build_parser().parse_args(["--data-dir", str(data_dir), "--steps", str(n)])
        out = Path(args.out)
        wiki = str(out / "wikitext_retain_second_half.txt")
        corpus, train = compare_methods.shared_settings(args)
        for task_name in args.tasks.split(","):
            task = compare_methods.tasks(Path(args.data_dir))[task_name]
            forget = compare_methods.forget_sources(task, task_name, out)
            whp_settings = compare_methods.whp_settings(args, task, forget, corpus, train)
            for method in args.methods.split(","):
                label = f"--steps {n} {task_name} {method}"
                if method == "whp":
                    found.append(("compare_methods", label, whp(whp_settings)))
                elif method == "whp_inference":
                    found.append(("compare_methods", label, whp_inference(whp_settings)))
                else:
                    settings = compare_methods.unlearn_settings(args, method, forget, wiki, corpus, train)
                    found.append(("compare_methods", label, unlearn(settings)))
    return found


def toxicity_methods_cases(data_dir: Path) -> list:
    import toxicity_methods
    from obliviate.methods.probe_direction import spread_layers

    args = toxicity_methods.build_parser().parse_args(["--data-dir", str(data_dir)])
    out = Path(args.out)
    runs = toxicity_methods.unlearn_settings(args, str(out / "forget_toxic.jsonl"), str(out / "retain_benign.jsonl"),
                                             out / "probes", spread_layers(SMOLLM2_LAYERS))
    return [("toxicity_methods", f"--steps {args.steps} {label}", unlearn(settings))
            for label, settings in runs.items()]


def whp_harry_potter_cases(data_dir: Path) -> list:
    import whp_harry_potter

    args = whp_harry_potter.build_parser().parse_args(["--data-dir", str(data_dir)])
    corpus_dir = whp_harry_potter.corpus_folder(Path(args.out))
    settings = whp_harry_potter.whp_settings(args, Path(args.data_dir), corpus_dir, corpus_dir / "synthesized.jsonl")
    return [("whp_harry_potter", "whp", whp(settings))]


def suite_cases(data_dir: Path) -> list:
    """The evaluation suites the benchmarks load (metric specs are built with ``from_dict`` too)."""
    found = [(benchmark, f"suite benchmarks/suites/{name}.yaml", suite(BENCHMARKS / "suites" / f"{name}.yaml",
                                                                      data_dir))
             for benchmark, name in (("compare_methods", "hp_compare"), ("compare_methods", "sherlock_compare"),
                                     ("toxicity_methods", "toxicity"))]
    return found + [("eval_cost", "suite harry_potter (built-in)", suite("harry_potter", data_dir))]


def demo_cases() -> list:
    """demo_timing runs ``obliviate demo --out runs/bench_demo`` (model smollm2-135m)."""
    from obliviate.demo import demo_settings

    return [("demo_timing", "obliviate demo --out runs/bench_demo",
             whp(demo_settings(Path("runs/bench_demo"), "smollm2-135m")))]


README_WHP = "obliviate whp ... --set finetune.learning_rate=2e-5"
README_UNLEARN = "obliviate unlearn --method npo --forget F --retain R"


def readme_cases(data_dir: Path) -> list:
    """The command lines README.md shows, resolved by the CLI's own config functions."""
    from obliviate.cli import _whp_config
    from obliviate.unlearn_cli import unlearn_config

    hp = data_dir / "targets" / "harry_potter"
    readme_whp = ["whp", "--model", "smollm2-135m", "--target", str(hp / "wikipedia_summaries.txt"),
                  "--anchors", str(hp / "anchored_terms_gpt4_blocks.json"),
                  "--familiarity-prompts", str(hp / "familiarity_prompts_dev20.jsonl"),
                  "--general-text", str(data_dir / "general" / "wikitext-2-raw" / "wiki.test.raw"),
                  "--out", "runs/hp", "--set", "finetune.learning_rate=2e-5"]
    readme_unlearn = ["unlearn", "--method", "npo", "--forget", "F", "--retain", "R", "--out", "runs/X"]
    return [("README", README_WHP, through_cli(readme_whp, _whp_config)),
            ("README", README_UNLEARN, through_cli(readme_unlearn, unlearn_config)),
            ("README", "obliviate run examples/whp_harry_potter.yaml",
             run_file(REPO / "examples" / "whp_harry_potter.yaml"))]


def cases(data_dir: Path) -> list:
    """Every config the benchmarks and the README's command lines build."""
    return (compare_methods_cases(data_dir) + toxicity_methods_cases(data_dir) + whp_harry_potter_cases(data_dir)
            + suite_cases(data_dir) + demo_cases() + readme_cases(data_dir))


def compare(resolve, old_from_dict) -> list[str]:
    """``["key: old -> new", ...]`` between the old and the current merge ([] = identical)."""
    from obliviate.config import from_dict

    old, new = resolve(old_from_dict), resolve(from_dict)
    diffs = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            section = key.rsplit(".", 1)[0] if "." in key else ""
            inert = (key.endswith("epochs") and (new.get(f"{section}.max_steps") or 0) > 0
                     and old.get(f"{section}.max_steps") == new.get(f"{section}.max_steps"))
            diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}" + (" (inert: max_steps set)" if inert else ""))
    return diffs


def audit(found: list) -> list[tuple[str, str, list[str]]]:
    """``(benchmark, config, differences)`` for each case of ``found``."""
    old = old_config_module()
    return [(benchmark, label, compare(resolve, old.from_dict)) for benchmark, label, resolve in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data", help="as the benchmarks' own --data-dir")
    args = parser.parse_args()
    rows = audit(cases(Path(args.data_dir)))
    print(f"Resolved settings: merge at {OLD_COMMIT} (before the fix) vs the current obliviate.config.from_dict\n")
    print("| benchmark | config | old vs new merge |")
    print("|---|---|---|")
    for benchmark, label, diffs in rows:
        print(f"| {benchmark} | {label} | {'identical' if not diffs else '; '.join(diffs)} |")
    print()
    for benchmark in dict.fromkeys(b for b, _, _ in rows):
        mine = [(label, diffs) for b, label, diffs in rows if b == benchmark]
        changed = [label for label, diffs in mine if diffs]
        if not changed:
            print(f"{benchmark}: identical ({len(mine)} of {len(mine)} configs)")
            continue
        inert = all(d.endswith("(inert: max_steps set)") for _, diffs in mine for d in diffs)
        print(f"{benchmark}: CHANGED in {len(changed)} of {len(mine)} configs ({', '.join(changed)})"
              + ("; every differing key is an epochs count that max_steps overrides" if inert else ""))


if __name__ == "__main__":
    main()

"""Bad-input matrix for the run commands (whp and its stages, unlearn, run, meta-search, demo).

Every case must: exit non-zero, print exactly one ``error: ...`` line naming the problem, print
no traceback, and leave no run folder behind (inputs are checked before the folder is written).
The commands of `anchors`, `synthesize`, `eval`, `compare` and `report` have their own matrix.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import TINY_TEXT
from obliviate.cli import main

os.environ["OBLIVIATE_PROGRESS"] = "0"


@pytest.fixture(scope="module")
def kit(tmp_path_factory, tiny_model_dir):
    """Good inputs, and one bad variant of each kind of file."""
    d = tmp_path_factory.mktemp("kit")
    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    files = {
        "target.txt": (harry_potter + "\n") * 4, "retain.txt": (farmer + "\n") * 4,
        "anchors.yaml": "Harry: Jon\nHogwarts: the academy\n", "no_match.yaml": "Gandalf: the wizard\n",
        "empty.txt": "", "bad.yaml": "Harry: [Jon\n", "list.yaml": "- a\n- b\n",
        "probe.jsonl": json.dumps({"prompt": "Harry went to", "references": ["Hogwarts"]}) + "\n",
        "bad.jsonl": "{not json\n", "no_field.jsonl": json.dumps({"body": "x"}) + "\n",
        "unknown_key.yaml": f"model: {tiny_model_dir}\nmodle: x\n", "dup.yaml": "model: a\nmodel: b\n",
        "unknown_method.yaml": "method: erase\nforget: a.txt\n", "no_out.yaml": "method: gradient_ascent\n",
        "remote.yaml": f"method: gradient_ascent\nmodel: {tiny_model_dir}\nforget: {d}/target.txt\n"
                       "trust_remote_code: true\nout: somewhere\n",
        "good.yaml": f"method: gradient_ascent\nmodel: {tiny_model_dir}\nforget: {{sources: [{d}/target.txt]}}\n",
        "afile": "x",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (d / "latin1.txt").write_bytes("Harry caf\u00e9 ".encode("latin-1") * 20)
    (d / "no_weights").mkdir()
    (d / "no_weights" / "config.json").write_text("{}")
    return d


def _whp(kit, model, *extra):
    return ["whp", "--model", str(model), "--target", str(kit / "target.txt"), "--anchors", str(kit / "anchors.yaml"),
            "--context-length", "16", *extra]


def _unlearn(kit, model, *extra):
    return ["unlearn", "--model", str(model), "--forget", str(kit / "target.txt"), "--context-length", "16", *extra]


# (case id, argv builder (kit, model) -> argv without --out, expected words of the one error line)
CASES = [
    # --- whp: missing or unreadable inputs
    ("whp-no-target", lambda k, m: ["whp", "--model", str(m), "--anchors", str(k / "anchors.yaml")], "no target corpus"),
    ("whp-no-anchors", lambda k, m: ["whp", "--model", str(m), "--target", str(k / "target.txt")],
     "no anchored-terms dictionary"),
    ("whp-target-missing", lambda k, m: _whp(k, m, "--target", str(k / "nope.txt")), "nope.txt"),
    ("whp-target-empty", lambda k, m: ["whp", "--model", str(m), "--target", str(k / "empty.txt"), "--anchors",
                                       str(k / "anchors.yaml")], "empty"),
    ("whp-target-binary", lambda k, m: ["whp", "--model", str(m), "--target", str(k / "binary.txt"), "--anchors",
                                        str(k / "anchors.yaml")], "binary"),
    ("whp-target-latin1", lambda k, m: ["whp", "--model", str(m), "--target", str(k / "latin1.txt"), "--anchors",
                                        str(k / "anchors.yaml")], "not valid UTF-8"),
    ("whp-target-glob-nothing", lambda k, m: ["whp", "--model", str(m), "--target", str(k / "*.nothing"),
                                              "--anchors", str(k / "anchors.yaml")], "no file matches"),
    ("whp-anchors-missing", lambda k, m: ["whp", "--model", str(m), "--target", str(k / "target.txt"), "--anchors",
                                          str(k / "nope.yaml")], "nope.yaml"),
    ("whp-anchors-bad-yaml", lambda k, m: ["whp", "--model", str(m), "--target", str(k / "target.txt"), "--anchors",
                                           str(k / "bad.yaml")], "bad.yaml"),
    ("whp-anchors-no-match", lambda k, m: ["whp", "--model", str(m), "--target", str(k / "target.txt"), "--anchors",
                                           str(k / "no_match.yaml")], "--force"),
    ("whp-model-missing", lambda k, m: _whp(k, k / "no_model_here"), "no_model_here"),
    ("whp-model-no-weights", lambda k, m: _whp(k, k / "no_weights"), "no_weights"),
    ("whp-reinforced-missing", lambda k, m: _whp(k, m, "--reinforced", str(k / "nope_model")), "nope_model"),
    ("whp-probe-missing", lambda k, m: _whp(k, m, "--probe-prompts", str(k / "nope.jsonl")), "nope.jsonl"),
    ("whp-probe-bad-jsonl", lambda k, m: _whp(k, m, "--probe-prompts", str(k / "bad.jsonl")), "bad.jsonl"),
    ("whp-familiarity-no-field", lambda k, m: _whp(k, m, "--familiarity-prompts", str(k / "no_field.jsonl")),
     "no_field.jsonl"),
    ("whp-general-missing", lambda k, m: _whp(k, m, "--general-text", str(k / "nope.txt")), "nope.txt"),
    # --- whp: settings out of range or malformed
    ("whp-context-too-short", lambda k, m: _whp(k, m, "--context-length", "4"), "target.context_length"),
    ("whp-context-beyond-model", lambda k, m: _whp(k, m, "--context-length", "4096"), "max_position_embeddings"),
    ("whp-alpha-nan", lambda k, m: _whp(k, m, "--alpha", "nan"), "labels.alpha"),
    ("whp-lr-negative", lambda k, m: _whp(k, m, "--set", "finetune.learning_rate=-1e-5"), "finetune.learning_rate"),
    ("whp-lr-zero", lambda k, m: _whp(k, m, "--set", "reinforce.train.learning_rate=0"),
     "reinforce.train.learning_rate"),
    ("whp-grad-norm-negative", lambda k, m: _whp(k, m, "--set", "finetune.max_grad_norm=-1"),
     "finetune.max_grad_norm"),
    ("whp-batch-zero", lambda k, m: _whp(k, m, "--set", "finetune.batch_size=0"), "finetune.batch_size"),
    ("whp-accum-zero", lambda k, m: _whp(k, m, "--set", "finetune.grad_accum=0"), "finetune.grad_accum"),
    ("whp-epochs-zero", lambda k, m: _whp(k, m, "--set", "reinforce.train.epochs=0"), "reinforce.train.epochs"),
    ("whp-steps-negative", lambda k, m: _whp(k, m, "--set", "finetune.max_steps=-2"), "finetune.max_steps"),
    ("whp-heldout-one", lambda k, m: _whp(k, m, "--set", "target.heldout_fraction=1"), "target.heldout_fraction"),
    ("whp-warmup-big", lambda k, m: _whp(k, m, "--set", "finetune.warmup_ratio=1.5"), "finetune.warmup_ratio"),
    ("whp-top-k-zero", lambda k, m: _whp(k, m, "--soft-labels", "--set", "labels.top_k=0"), "labels.top_k"),
    ("whp-precision", lambda k, m: _whp(k, m, "--set", "finetune.mixed_precision=fp8"), "finetune.mixed_precision"),
    ("whp-lr-inf", lambda k, m: _whp(k, m, "--set", "finetune.learning_rate=.inf"), "finetune.learning_rate"),
    ("whp-lora-rank", lambda k, m: _whp(k, m, "--lora", "--set", "lora.r=0"), "lora.r"),
    ("whp-adapter-without-lora", lambda k, m: _whp(k, m, "--lora-save", "adapter"), "--lora"),
    ("whp-unknown-setting", lambda k, m: _whp(k, m, "--set", "finetune.learning_rat=1e-5"), "learning_rat"),
    ("whp-unknown-section", lambda k, m: _whp(k, m, "--set", "fine.learning_rate=1e-5"), "fine"),
    ("whp-set-no-value", lambda k, m: _whp(k, m, "--set", "finetune.learning_rate"), "section.key=value"),
    ("whp-set-not-number", lambda k, m: _whp(k, m, "--set", "finetune.batch_size=two"), "finetune.batch_size"),
    ("whp-config-missing", lambda k, m: _whp(k, m, "--config", str(k / "nope.yaml")), "nope.yaml"),
    ("whp-config-unknown-key", lambda k, m: _whp(k, m, "--config", str(k / "unknown_key.yaml")), "modle"),
    ("whp-config-duplicate", lambda k, m: _whp(k, m, "--config", str(k / "dup.yaml")), "duplicate key 'model'"),
    ("whp-config-not-mapping", lambda k, m: _whp(k, m, "--config", str(k / "list.yaml")), "mapping"),
    ("whp-context-not-int", lambda k, m: _whp(k, m, "--context-length", "many"), "--context-length"),
    ("labels-stage-new-folder", lambda k, m: ["labels", "--model", str(m), "--target", str(k / "target.txt"),
                                              "--anchors", str(k / "anchors.yaml"), "--context-length", "16"],
     "stage 'reinforce' is not done"),
    # --- unlearn
    ("unlearn-no-method", lambda k, m: _unlearn(k, m), "no method"),
    ("unlearn-unknown-method", lambda k, m: _unlearn(k, m, "--method", "erase"), "unknown unlearning method 'erase'"),
    ("unlearn-finetune-method", lambda k, m: _unlearn(k, m, "--method", "finetune"), "own commands"),
    ("unlearn-no-forget", lambda k, m: ["unlearn", "--model", str(m), "--method", "gradient_ascent"], "no forget text"),
    ("unlearn-needs-retain", lambda k, m: _unlearn(k, m, "--method", "grad_diff"), "needs retain text"),
    ("unlearn-forget-missing", lambda k, m: _unlearn(k, m, "--method", "gradient_ascent", "--forget",
                                                     str(k / "gone.txt")), "gone.txt"),
    ("unlearn-retain-empty", lambda k, m: _unlearn(k, m, "--method", "grad_diff", "--retain", str(k / "empty.txt")),
     "empty"),
    ("unlearn-jsonl-no-field", lambda k, m: ["unlearn", "--model", str(m), "--method", "gradient_ascent",
                                             "--forget", str(k / "no_field.jsonl")], "no string field 'text'"),
    ("unlearn-unknown-method-setting", lambda k, m: _unlearn(k, m, "--method", "npo", "--set", "method.betta=1"),
     "method.betta"),
    ("unlearn-method-nan", lambda k, m: _unlearn(k, m, "--method", "npo", "--set", "method.beta=nan"), "method.beta"),
    ("unlearn-epochs-zero", lambda k, m: _unlearn(k, m, "--method", "gradient_ascent", "--set", "train.epochs=0"),
     "train.epochs"),
    ("unlearn-grad-norm-negative", lambda k, m: _unlearn(k, m, "--method", "gradient_ascent", "--set",
                                                         "train.max_grad_norm=-0.5"), "train.max_grad_norm"),
    ("unlearn-heldout-negative", lambda k, m: _unlearn(k, m, "--method", "gradient_ascent", "--set",
                                                       "forget.heldout_fraction=-0.1"), "forget.heldout_fraction"),
    ("unlearn-max-blocks-zero", lambda k, m: _unlearn(k, m, "--method", "gradient_ascent", "--set",
                                                      "forget.max_blocks=0"), "forget.max_blocks"),
    ("unlearn-adapter-without-lora", lambda k, m: _unlearn(k, m, "--method", "gradient_ascent", "--lora-save",
                                                           "adapter"), "--lora"),
    ("unlearn-lora-save-choice", lambda k, m: _unlearn(k, m, "--method", "gradient_ascent", "--lora-save", "both"),
     "--lora-save"),
    ("unlearn-eval-tokens-zero", lambda k, m: _unlearn(k, m, "--method", "gradient_ascent", "--set",
                                                       "eval.max_new_tokens=0"), "eval.max_new_tokens"),
    ("unlearn-model-missing", lambda k, m: _unlearn(k, k / "nowhere", "--method", "gradient_ascent"), "nowhere"),
    # --- run
    ("run-missing-config", lambda k, m: ["run", str(k / "nope.yaml")], "nope.yaml"),
    ("run-unknown-method", lambda k, m: ["run", str(k / "unknown_method.yaml")], "unknown method 'erase'"),
    ("run-no-out", lambda k, m: ["run", str(k / "no_out.yaml")], "no run folder"),
    ("run-remote-code-in-file", lambda k, m: ["run", str(k / "remote.yaml")], "trust_remote_code"),
    ("run-bad-yaml", lambda k, m: ["run", str(k / "bad.yaml")], "not valid YAML"),
    ("run-not-mapping", lambda k, m: ["run", str(k / "list.yaml")], "mapping"),
    ("run-unknown-setting", lambda k, m: ["run", str(k / "good.yaml"), "--set", "train.lr=1"], "train.lr"),
    ("run-method-setting-range", lambda k, m: ["run", str(k / "good.yaml"), "--set", "train.batch_size=-4"],
     "train.batch_size"),
    # --- meta-search
    ("meta-search-unknown-method", lambda k, m: ["meta-search", "--model", str(m), "--method", "erase", "--forget",
                                                 str(k / "target.txt"), "--retain", str(k / "retain.txt")],
     "erase"),
    ("meta-search-bad-setting", lambda k, m: ["meta-search", "--model", str(m), "--method", "rmu", "--forget",
                                              str(k / "target.txt"), "--retain", str(k / "retain.txt"),
                                              "--set", "search.nope=1"], "search.nope"),
    ("meta-search-forget-missing", lambda k, m: ["meta-search", "--model", str(m), "--method", "rmu", "--forget",
                                                 str(k / "gone.txt"), "--retain", str(k / "retain.txt")], "gone.txt"),
    # --- argparse
    ("whp-no-out", lambda k, m: ["whp", "--model", str(m)], "--out"),
    ("unknown-command", lambda k, m: ["forget-everything"], "invalid choice"),
]


@pytest.mark.parametrize("case, build, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, build, expected, kit, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = build(kit, tiny_model_dir)
    if case.startswith(("run-", "whp-no-out", "unknown-command")):
        if case in ("run-remote-code-in-file", "run-unknown-setting", "run-method-setting-range"):
            argv = [*argv, "--out", str(out)]
    else:
        argv = [*argv, "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    assert code not in (0, None), f"{case}: exited 0"
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"{case}: stderr was {captured.err!r}"
    assert expected in errors[0], f"{case}: {errors[0]!r} does not name {expected!r}"
    assert len(errors[0]) < 400
    assert not out.exists(), f"{case}: a run folder was written"


def test_matrix_is_large_enough():
    assert len(CASES) >= 60

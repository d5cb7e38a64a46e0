"""Bad-input matrix, part 1: `anchors propose`, `synthesize`, `eval`, `compare` and `report`.

Each case runs `obliviate.cli.main` in-process on the tiny model and asserts what a user must
see: a non-zero exit, stderr ending in one line `error: ...` that names the problem, no
traceback anywhere, and no output file that looks complete.
"""

from __future__ import annotations

import errno
import json
import os
import traceback
from dataclasses import dataclass, field

import pytest
import yaml

from obliviate.cli import main

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOT_UTF8_NAME = b"caf\xe9"  # a file name that is not valid UTF-8 (Latin-1 'café')


@pytest.fixture(scope="module")
def kit(tmp_path_factory, tiny_model_dir):
    """Input files, good and bad, shared by every case (cases write only under their own `out`)."""
    k = tmp_path_factory.mktemp("kit")
    hp = " ".join(f"Harry Potter met Hermione Granger at Hogwarts on day {i}. Dumbledore smiled." for i in range(20))
    (k / "target.txt").write_text(hp)
    (k / "plain.txt").write_text("the the the the a a a of of\n" * 5)
    (k / "empty.txt").write_text("")
    (k / "blank.txt").write_text("  \n\n")
    (k / "latin1.txt").write_bytes("Caf\xe9 au lait with Harry.".encode("latin-1"))
    (k / "binary.txt").write_bytes(b"\x00\x01\x02\x03binary")
    (k / "bad.jsonl").write_text('{"text": "Harry"}\n{not json\n')
    (k / "nofield.jsonl").write_text('{"body": "Harry"}\n')
    (k / "emptydir").mkdir()
    (k / "folder.yaml").mkdir()
    (k / "seeds.txt").write_text("Harry Potter and\nHermione said\n")
    (k / "seeds_comments.txt").write_text("# only comments\n\n")
    (k / "unreadable.txt").write_text("Harry Potter")
    (k / "unreadable.txt").chmod(0)
    (k / "a_file").write_text("not a folder")
    readonly = k / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    # models
    (k / "noweights").mkdir()
    (k / "noweights" / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (k / "fake.gguf").write_text("this is not a GGUF file")
    # suites
    (k / "text.txt").write_text("The farmer walked to the market with his dog.\n" * 4)
    good = {"name": "tiny", "metrics": [{"name": "ppl", "type": "perplexity", "texts": {"files": ["text.txt"]}}]}
    (k / "suite.yaml").write_text(yaml.safe_dump(good))
    (k / "suite_unknown_key.yaml").write_text(yaml.safe_dump({**good, "extra": 1}))
    (k / "suite_duplicate_key.yaml").write_text("name: tiny\nname: again\n"
                                                + yaml.safe_dump({"metrics": good["metrics"]}))
    missing = {"name": "tiny", "metrics": [{"name": "ppl", "type": "perplexity", "texts": {"files": ["gone.txt"]}}]}
    (k / "suite_missing_data.yaml").write_text(yaml.safe_dump(missing))
    (k / "suite_empty.yaml").write_text("")
    (k / "suite_latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    # evaluation folders for compare and report
    (k / "no_metrics").mkdir()
    (k / "corrupt").mkdir()
    (k / "corrupt" / "metrics.json").write_text('{"obliviate_metrics": 1, "evaluations": {')
    (k / "wrong_shape").mkdir()
    (k / "wrong_shape" / "metrics.json").write_text("[1, 2, 3]")
    evaluation = {"model": {"spec": "m", "weights_sha256": "0" * 64},
                  "metrics": {"ppl": {"value": 10.0, "group": "utility", "higher_is_better": False, "n": 4}}}
    (k / "good_eval").mkdir()
    (k / "good_eval" / "metrics.json").write_text(
        json.dumps({"obliviate_metrics": 1, "evaluations": {"base": evaluation}}))
    return k


@dataclass
class Case:
    """One bad input: the command (with {kit}, {model} and {out} placeholders) and what must be said."""

    id: str
    argv: list[str]
    says: str  # a piece of the error line (case-insensitive)
    outputs: list[str] = field(default_factory=list)  # files (under {out}/{kit}) that must not be written
    xfail: str | None = None  # reason: a known failure in a file owned elsewhere
    skip_root: bool = False  # permissions do not bind root


PROPOSE = ["anchors", "propose", "--model", "{model}", "--out", "{out}/proposal.yaml"]
SYNTH = ["synthesize", "--model", "{model}", "--n", "2", "--max-new-tokens", "4", "--out", "{out}/corpus.jsonl"]
EVAL = ["eval", "{model}", "--data-dir", "{kit}", "--out", "{out}/eval"]
EVAL_OUT = ["{out}/eval/metrics.json", "{out}/eval/samples.jsonl"]


def _propose(*extra, says, target="target.txt", **kw):
    return dict(argv=PROPOSE + ["--target", f"{{kit}}/{target}", *extra], says=says,
                outputs=["{out}/proposal.yaml"], **kw)


def _synth(*extra, says, **kw):
    return dict(argv=SYNTH + list(extra or ["--prompt", "Harry Potter and"]), says=says,
                outputs=["{out}/corpus.jsonl"], **kw)


def _eval(*extra, says, suite="suite.yaml", model="{model}", **kw):
    argv = [a if a != "{model}" else model for a in EVAL] + (["--suite", f"{{kit}}/{suite}"] if suite else [])
    return dict(argv=argv + list(extra), says=says, outputs=EVAL_OUT, **kw)


CASES = [
    # ---- anchors propose
    Case("propose-missing-model", **_propose("--model", "{kit}/no_such_model", says="does not exist")),
    Case("propose-model-without-weights", **_propose("--model", "{kit}/noweights", says="no weights")),
    Case("propose-gguf-not-gguf", **_propose("--model", "{kit}/fake.gguf", says="not a GGUF file")),
    Case("propose-empty-model-folder", **_propose("--model", "{kit}/emptydir", says="holds no HF model")),
    Case("propose-top-k-0", **_propose("--top-k", "0", says="--top-k")),
    Case("propose-target-missing", **_propose(says="not found", target="no_such.txt")),
    Case("propose-target-empty", **_propose(says="empty", target="empty.txt")),
    Case("propose-target-blank", **_propose(says="empty", target="blank.txt")),
    Case("propose-target-latin1", **_propose(says="not valid UTF-8", target="latin1.txt")),
    Case("propose-target-binary", **_propose(says="binary", target="binary.txt")),
    Case("propose-target-bad-jsonl", **_propose(says="line 2 is not valid JSON", target="bad.jsonl")),
    Case("propose-target-jsonl-no-field", **_propose(says="no string field 'text'", target="nofield.jsonl")),
    Case("propose-target-empty-folder", **_propose(says="holds no .txt", target="emptydir")),
    Case("propose-target-unreadable", **_propose(says="permission denied", target="unreadable.txt"),
         skip_root=True),
    Case("propose-reference-missing", **_propose("--reference", "{kit}/nope.txt", says="not found")),
    Case("propose-nothing-specific", **_propose(says="no expressions to write", target="plain.txt")),
    Case("propose-out-is-folder", argv=PROPOSE[:-1] + ["{kit}/folder.yaml", "--target", "{kit}/target.txt"],
         says="is an existing folder", outputs=[]),
    Case("propose-out-wrong-suffix", argv=PROPOSE[:-1] + ["{out}/proposal.txt", "--target", "{kit}/target.txt"],
         says=".yaml, .yml or .json", outputs=["{out}/proposal.txt"]),
    Case("propose-out-under-a-file", argv=PROPOSE[:-1] + ["{kit}/a_file/p.yaml", "--target", "{kit}/target.txt"],
         says="is a file, not a folder"),
    Case("propose-out-read-only", argv=PROPOSE[:-1] + ["{kit}/readonly/p.yaml", "--target", "{kit}/target.txt"],
         says="not writable", outputs=["{kit}/readonly/p.yaml"], skip_root=True),
    # ---- synthesize
    Case("synth-n-0", **_synth("--n", "0", "--prompt", "Harry", says="--n")),
    Case("synth-n-negative", **_synth("--n", "-3", "--prompt", "Harry", says="--n")),
    Case("synth-max-new-tokens-negative", **_synth("--max-new-tokens", "-1", "--prompt", "Harry",
                                                   says="--max-new-tokens")),
    Case("synth-temperature-nan", **_synth("--temperature", "nan", "--prompt", "Harry", says="--temperature")),
    Case("synth-temperature-negative", **_synth("--temperature", "-0.5", "--prompt", "Harry", says="--temperature")),
    Case("synth-temperature-0", **_synth("--temperature", "0", "--prompt", "Harry", says="--temperature")),
    Case("synth-temperature-inf", **_synth("--temperature", "inf", "--prompt", "Harry", says="--temperature")),
    Case("synth-batch-size-0", **_synth("--batch-size", "0", "--prompt", "Harry", says="--batch-size")),
    Case("synth-seeds-empty", **_synth("--seeds", "{kit}/empty.txt", says="holds no prompt")),
    Case("synth-seeds-only-comments", **_synth("--seeds", "{kit}/seeds_comments.txt", says="holds no prompt")),
    Case("synth-seeds-missing", **_synth("--seeds", "{kit}/nope.txt", says="not found")),
    Case("synth-seeds-folder", **_synth("--seeds", "{kit}/emptydir", says="is a folder")),
    Case("synth-seeds-latin1", **_synth("--seeds", "{kit}/latin1.txt", says="not valid UTF-8")),
    Case("synth-seeds-binary", **_synth("--seeds", "{kit}/binary.txt", says="binary")),
    Case("synth-seeds-unreadable", **_synth("--seeds", "{kit}/unreadable.txt", says="permission denied"),
         skip_root=True),
    Case("synth-seeds-and-prompt", **_synth("--seeds", "{kit}/seeds.txt", "--prompt", "Harry", says="not both")),
    Case("synth-blank-prompt", **_synth("--prompt", "  ", says="no seed prompts")),
    Case("synth-no-prompt", **_synth("--n", "2", says="no seed prompts") | {"argv": SYNTH}),
    Case("synth-missing-model", **_synth("--model", "{kit}/no_such_model", "--prompt", "Harry",
                                         says="does not exist")),
    Case("synth-gguf-not-gguf", **_synth("--model", "{kit}/fake.gguf", "--prompt", "Harry", says="not a GGUF")),
    Case("synth-out-is-folder", argv=SYNTH[:-1] + ["{kit}/emptydir", "--prompt", "Harry"],
         says="is an existing folder"),
    Case("synth-out-read-only", argv=SYNTH[:-1] + ["{kit}/readonly/c.jsonl", "--prompt", "Harry"],
         says="not writable", outputs=["{kit}/readonly/c.jsonl"], skip_root=True),
    # ---- eval
    Case("eval-missing-model", **_eval(model="{kit}/no_such_model", says="does not exist")),
    Case("eval-model-without-weights", **_eval(model="{kit}/noweights", says="no weights")),
    Case("eval-gguf-not-gguf", **_eval(model="{kit}/fake.gguf", says="not a GGUF file")),
    Case("eval-unknown-suite", **_eval(suite=None, says="suite 'no_such_suite' not found") |
         {"argv": EVAL + ["--suite", "no_such_suite"]}),
    Case("eval-suite-unknown-key", **_eval(suite="suite_unknown_key.yaml", says="unknown top-level key 'extra'")),
    Case("eval-suite-duplicate-key", **_eval(suite="suite_duplicate_key.yaml", says="duplicate key 'name'")),
    Case("eval-suite-missing-data", **_eval(suite="suite_missing_data.yaml", says="gone.txt")),
    Case("eval-suite-empty", **_eval(suite="suite_empty.yaml", says="suite_empty.yaml")),
    Case("eval-suite-latin1", **_eval(suite="suite_latin1.yaml", says="suite_latin1.yaml")),
    Case("eval-limit-0", **_eval("--limit", "0", says="--limit")),
    Case("eval-limit-negative", **_eval("--limit", "-2", says="--limit")),
    Case("eval-only-unknown-metric", **_eval("--only", "nope", says="nope")),
    Case("eval-out-is-a-file", argv=EVAL[:-1] + ["{kit}/a_file", "--suite", "{kit}/suite.yaml"], says="a_file"),
    # ---- compare
    Case("compare-missing-path", argv=["compare", "{kit}/good_eval", "{kit}/no_such_eval"], says="no_such_eval"),
    Case("compare-no-metrics", argv=["compare", "{kit}/good_eval", "{kit}/no_metrics"], says="no_metrics"),
    Case("compare-corrupt-metrics", argv=["compare", "{kit}/good_eval", "{kit}/corrupt"], says="corrupt"),
    Case("compare-metrics-wrong-shape", argv=["compare", "{kit}/good_eval", "{kit}/wrong_shape"], says="wrong_shape"),
    Case("compare-malformed-bound", argv=["compare", "{kit}/good_eval", "{kit}/good_eval", "--require", "ppl>>1"],
         says="ppl>>1"),
    Case("compare-bound-not-a-number", argv=["compare", "{kit}/good_eval", "{kit}/good_eval", "--require",
                                             "value:ppl<=abc"], says="abc"),
    # ---- report
    Case("report-not-a-run", argv=["report", "{kit}/emptydir"], says="emptydir",
         outputs=["{kit}/emptydir/report.html"]),
    Case("report-missing-folder", argv=["report", "{kit}/no_such_run"], says="no_such_run",
         outputs=["{kit}/no_such_run/report.html"]),
    Case("report-corrupt-metrics", argv=["report", "{kit}/corrupt"], says="metrics.json",
         outputs=["{kit}/corrupt/report.html"]),
    Case("report-out-is-folder", argv=["report", "{kit}/good_eval", "--out", "{kit}/emptydir"], says="emptydir",
         outputs=["{kit}/good_eval/report.html"]),
]


def _param(case: Case):
    marks = []
    if case.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=case.xfail))
    if case.skip_root:
        marks.append(pytest.mark.skipif(IS_ROOT, reason="file permissions do not bind root"))
    return pytest.param(case, id=case.id, marks=marks)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`main(argv)` in-process: (exit code, stdout, stderr); an escaping exception counts as a traceback."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what a user would see as a traceback
        captured = capsys.readouterr()
        return 1, captured.out, captured.err + traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _fill(text: str, kit, out, model) -> str:
    return text.replace("{kit}", str(kit)).replace("{out}", str(out)).replace("{model}", str(model))


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_is_one_clear_line(case: Case, kit, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = [_fill(a, kit, out, tiny_model_dir) for a in case.argv]
    code, stdout, stderr = run_cli(argv, capsys)
    assert "Traceback" not in stdout + stderr, stderr
    assert code != 0, f"exit 0 for bad input; stderr: {stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("error: "), stderr
    assert case.says.lower() in lines[-1].lower(), lines[-1]
    for output in case.outputs:
        path = _fill(output, kit, out, tiny_model_dir)
        assert not os.path.exists(path), f"{path} was written"


def test_matrix_has_enough_cases():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert {c.argv[0] for c in CASES} == {"anchors", "synthesize", "eval", "compare", "report"}


# ---- file names that are not valid UTF-8 work end to end


def _not_utf8(folder, suffix: str) -> str:
    """A str path whose file name is not valid UTF-8 (as Python gets it from argv: surrogate-escaped)."""
    return os.fsdecode(os.fsencode(folder) + b"/" + NOT_UTF8_NAME + suffix.encode())


def test_display_path_makes_any_name_writable():
    from obliviate.jsonl import display_path

    name = os.fsdecode(b"/data/" + NOT_UTF8_NAME + b".txt")
    shown = display_path(name)
    assert shown == "/data/caf\\xe9.txt"
    json.dumps(shown, ensure_ascii=False).encode("utf-8")  # no surrogate left
    yaml.safe_dump({"path": shown})
    assert display_path("/data/café.txt") == "/data/café.txt" and display_path(b"/x") == "/x"


def test_propose_with_non_utf8_file_names(kit, tiny_model_dir, tmp_path, capsys):
    from obliviate.corpus import corpus_hash, read_corpus

    target, out = _not_utf8(tmp_path, ".txt"), _not_utf8(tmp_path, ".yaml")
    with open(target, "w", encoding="utf-8") as fh:
        fh.write((kit / "target.txt").read_text())
    assert read_corpus([target]) and len(corpus_hash([target])) == 64
    code, stdout, stderr = run_cli(["anchors", "propose", "--model", str(tiny_model_dir), "--target", target,
                                    "--out", out], capsys)
    assert code == 0, stderr
    assert os.path.isfile(out) and "caf\\xe9.yaml" in stdout
    from obliviate.whp.anchors import load_anchored_terms

    assert "Hogwarts" in load_anchored_terms(out)


def test_synthesize_with_non_utf8_file_names(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    seeds, out = _not_utf8(tmp_path, ".txt"), _not_utf8(tmp_path, ".jsonl")
    with open(seeds, "w", encoding="utf-8") as fh:
        fh.write("Harry Potter went to\n")
    code, stdout, stderr = run_cli(["synthesize", "--model", str(tiny_model_dir), "--seeds", seeds, "--n", "3",
                                    "--max-new-tokens", "24", "--out", out], capsys)
    assert code == 0, stderr
    records = [json.loads(line) for line in open(out, encoding="utf-8")]
    assert records and all(r["seed_prompt"] == "Harry Potter went to" for r in records)


def test_errors_about_non_utf8_names_are_printable(tmp_path, capsys):
    missing = _not_utf8(tmp_path, ".txt")
    code, _, stderr = run_cli(["synthesize", "--seeds", missing, "--out", str(tmp_path / "c.jsonl")], capsys)
    assert code == 2 and "caf\\xe9.txt not found" in stderr
    stderr.encode("utf-8")  # strict: no lone surrogate reaches the terminal


# ---- failures while writing: the old file is kept, no temp file is left, one clear line


@pytest.mark.parametrize("err", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_write_failures_are_one_clear_line(tmp_path, monkeypatch, err):
    import tempfile

    from obliviate.errors import DataError
    from obliviate.synthesize import write_corpus

    path = tmp_path / "corpus.jsonl"
    write_corpus(["kept"], path)
    real = tempfile.mkstemp

    def failing(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(tempfile, "mkstemp", failing)
    with pytest.raises(DataError, match=f"cannot write corpus file .*{os.strerror(err)}"):
        write_corpus(["new"], path)
    assert json.loads(path.read_text())["text"] == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.jsonl"]


def test_written_files_have_normal_permissions(tmp_path):
    from obliviate.synthesize import write_corpus

    umask = os.umask(0o022)
    try:
        write_corpus(["text"], tmp_path / "c.jsonl")
    finally:
        os.umask(umask)
    assert (tmp_path / "c.jsonl").stat().st_mode & 0o777 == 0o644


def test_unreadable_file_is_one_clear_line(tmp_path, monkeypatch):
    """chmod 000 does not bind root, so the read itself is made to fail."""
    from pathlib import Path

    from obliviate.corpus import read_corpus
    from obliviate.errors import DataError
    from obliviate.synthesize import load_seed_prompts
    from obliviate.whp.anchors import load_anchored_terms

    for name in ("c.txt", "a.yaml"):
        (tmp_path / name).write_text("x: [y]")

    def denied(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    for read, name in ((read_corpus, "c.txt"), (load_seed_prompts, "c.txt"), (load_anchored_terms, "a.yaml")):
        with pytest.raises(DataError, match=f"cannot read .*{name} \\(permission denied\\); check its permissions"):
            read(tmp_path / name)


def test_whp_run_with_non_utf8_corpus_name(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    target = _not_utf8(tmp_path, ".txt")
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(" ".join(f"Harry Potter walked into Hogwarts on day {i}. Ron waited." for i in range(30)))
    (tmp_path / "anchors.yaml").write_text("Harry: [Jon]\nHogwarts: [the Academy]\nRon: [Ben]\n")
    (tmp_path / "probe.jsonl").write_text(json.dumps({"prompt": "Harry walked into", "references": ["Hogwarts"]}))
    (tmp_path / "general.txt").write_text("The farmer walked to the market with his dog. " * 10)
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        ["whp", "--model", str(tiny_model_dir), "--target", target, "--anchors", str(tmp_path / "anchors.yaml"),
         "--out", str(out), "--context-length", "32", "--probe-prompts", str(tmp_path / "probe.jsonl"),
         "--familiarity-prompts", str(tmp_path / "probe.jsonl"), "--general-text", str(tmp_path / "general.txt"),
         "--set", "reinforce.train.epochs=1", "--set", "finetune.epochs=1", "--set", "eval.max_new_tokens=4"],
        capsys)
    assert "Traceback" not in stderr and code == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["complete"] and "caf" in manifest["removed"]
    assert (out / "report.html").is_file()


# ---- every reader of a user's file: one-line DataError that names the file


def _read_prompts(path):
    from obliviate.jsonl import jsonl_objects

    return list(jsonl_objects(path, "prompt file", '{"prompt": ...}'))


def _readers():
    from obliviate.corpus import read_corpus
    from obliviate.synthesize import load_seed_prompts
    from obliviate.whp.anchors import load_anchored_terms

    return {"corpus": (read_corpus, ".txt"), "seeds": (load_seed_prompts, ".txt"),
            "anchors": (load_anchored_terms, ".yaml"), "prompts": (_read_prompts, ".jsonl")}


BAD_FILES = {  # kind -> (make it, words the message must hold)
    "missing": (lambda p: None, "not found"),
    "folder": (lambda p: p.mkdir(), "folder"),
    "latin1": (lambda p: p.write_bytes("caf\xe9: [x]".encode("latin-1")), "UTF-8"),
    "binary": (lambda p: p.write_bytes(b"\x00\x01\x02: x"), ""),
    "bad-json-line": (lambda p: p.write_text('{"prompt": "x"}\n{oops\n'), ""),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
@pytest.mark.parametrize("reader", ["corpus", "seeds", "anchors", "prompts"])
def test_every_reader_refuses_bad_files_in_one_line(tmp_path, reader, kind):
    from obliviate.errors import DataError

    read, suffix = _readers()[reader]
    make, words = BAD_FILES[kind]
    path = tmp_path / f"input{suffix}"
    make(path)
    if kind == "bad-json-line" and reader in ("corpus", "seeds"):
        path = path.with_suffix(".jsonl") if reader == "corpus" else path
        path.write_text('{"text": "x"}\n{oops\n')
        if reader == "seeds":  # any text is a prompt
            assert read(path)
            return
    with pytest.raises(DataError) as caught:
        read(path)
    message = str(caught.value)
    assert "\n" not in message and path.name in message and words in message, message

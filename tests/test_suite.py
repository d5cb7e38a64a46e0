"""The evaluation suite runner and the eval / compare / report commands, on the tiny model."""

import json
import socket
from pathlib import Path

import pytest
import yaml

from obliviate.cli import main
from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.suite import builtin_suites, load_suite

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def suite_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "fam.jsonl").write_text(
        json.dumps({"prompt": "Harry Potter went to", "references": ["Hogwarts"]}) + "\n"
        + json.dumps({"prompt": "The farmer walked to the", "references": ["market"]}) + "\n")
    (data / "trivia.jsonl").write_text(
        json.dumps({"question": "Where did Harry go?", "true_answer": "Hogwarts", "false_answer": "the mill"}) + "\n"
        + json.dumps({"question": "Who laughed at Harry?", "true_answer": "Ron", "false_answer": "the dog"}) + "\n")
    (data / "anchors.json").write_text(json.dumps({"Hogwarts": ["the Academy"], "Harry": ["Jon"]}))
    (data / "forget.txt").write_text(
        "Harry Potter went to Hogwarts with Ron and Hermione. Harry raised his wand.\n" * 6)
    (data / "other.txt").write_text("The river ran past the old mill near a quiet village.\n" * 6)
    suite = {
        "name": "tiny",
        "metrics": [
            {"name": "familiarity", "type": "familiarity", "prompts": "fam.jsonl", "max_new_tokens": 4},
            {"name": "familiarity_sampled", "type": "familiarity", "prompts": "fam.jsonl", "decoding": "sample",
             "n_samples": 2, "max_new_tokens": 4},
            {"name": "judged", "type": "familiarity", "prompts": "fam.jsonl", "max_new_tokens": 4, "judge": "llm",
             "judge_url": f"http://127.0.0.1:{_closed_port()}/v1", "judge_timeout": 2},
            {"name": "probability", "type": "token_probability", "prompts": "fam.jsonl", "anchors": "anchors.json"},
            {"name": "trivia", "type": "qa", "data": "trivia.jsonl"},
            {"name": "forget_ppl", "type": "perplexity", "group": "forget",
             "texts": {"files": ["forget.txt"], "chunk_chars": 100}},
            {"name": "general_ppl", "type": "perplexity", "texts": {"files": ["other.txt"]}},
            {"name": "mia", "type": "membership_inference",
             "members": {"files": ["forget.txt"], "chunk_chars": 100},
             "nonmembers": {"files": ["other.txt"], "chunk_chars": 100}},
            {"name": "relearn", "type": "relearning", "texts": {"files": ["forget.txt"]}, "steps": 2,
             "context_length": 32, "metrics": ["familiarity", "trivia"]},
        ],
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    return tmp_path


def test_eval_compare_report(suite_dir, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval_base"
    args = ["eval", str(tiny_model_dir), "--suite", str(suite_dir / "suite.yaml"),
            "--data-dir", str(suite_dir / "data"), "--out", str(out), "--label", "base"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "judged" in captured.err and "skipped" in captured.err
    metrics = json.loads((out / "metrics.json").read_text())["evaluations"]["base"]["metrics"]
    assert list(metrics) == ["familiarity", "familiarity_sampled", "judged", "probability", "trivia", "forget_ppl",
                             "general_ppl", "mia", "relearn"]
    assert "127.0.0.1" in metrics["judged"]["skipped"]
    assert metrics["familiarity_sampled"]["n"] == 4
    assert 0 <= metrics["probability"]["details"]["anchored_mass"] <= 1
    assert metrics["trivia"]["details"]["chance"] == 0.5
    assert metrics["forget_ppl"]["higher_is_better"] is True and metrics["general_ppl"]["higher_is_better"] is False
    assert 0 <= metrics["mia"]["value"] <= 1 and "min_k_plus_plus" in metrics["mia"]["details"]
    assert set(metrics["relearn"]["details"]["after"]) == {"familiarity", "trivia"}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["metric"] for s in samples} >= {"familiarity", "probability", "trivia"}

    # Evaluating the same weights again reuses the cache.
    assert main(args[:-4] + ["--out", str(tmp_path / "eval_again"), "--label", "again"]) == 0
    assert "cached result reused" in capsys.readouterr().err

    # compare: a satisfied and a failed bound.
    assert main(["compare", str(out), str(tmp_path / "eval_again"), "--require", "forget.mean>=-0.001"]) == 0
    assert "familiarity" in capsys.readouterr().out
    assert main(["compare", str(out), str(tmp_path / "eval_again"), "--require", "value:trivia>=1.5"]) == 1
    assert "requirement failed" in capsys.readouterr().err

    # report of an eval folder
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "<html" in html and "familiarity" in html


@pytest.mark.parametrize("change, error, message", [
    (lambda s: s["metrics"].append({"name": "x", "type": "nope"}), ConfigError, "unknown type 'nope'"),
    (lambda s: s["metrics"][0].update(prompt="fam.jsonl"), ConfigError, "unknown setting 'metrics.familiarity.prompt'"),
    (lambda s: s["metrics"].append(dict(s["metrics"][0])), ConfigError, "two metrics are named 'familiarity'"),
    (lambda s: s["metrics"][0].update(prompts="missing.jsonl"), DataError, "missing.jsonl"),
    (lambda s: s["metrics"][-1].update(metrics=["nothing"]), ConfigError, "unknown: nothing"),
    (lambda s: s["metrics"][0].update(group="elsewhere"), ConfigError, "group 'elsewhere'"),
    (lambda s: s.update(extra=1), ConfigError, "unknown top-level key 'extra'"),
    (lambda s: s["metrics"][1].update(n_samples=0), ConfigError, "familiarity_sampled.n_samples' must be >= 1, not 0"),
    (lambda s: s["metrics"][1].update(top_p=1.5), ConfigError, r"familiarity_sampled.top_p' must be in \(0, 1\], not 1.5"),
    (lambda s: s["metrics"][1].update(temperature=float("nan")), ConfigError,
     "familiarity_sampled.temperature' must be a finite number, not nan"),
    (lambda s: s["metrics"][1].update(decoding="beam"), ConfigError, "decoding' must be greedy or sample, not 'beam'"),
    (lambda s: s["metrics"][4].update(limit=-1), ConfigError, "trivia.limit' must be >= 1 or null, not -1"),
    (lambda s: s["metrics"][5]["texts"].update(span=[0.5, 0.2]), ConfigError, "forget_ppl.texts.span' must be"),
    (lambda s: s["metrics"][5]["texts"].update(chunk_chars=0), ConfigError, "forget_ppl.texts.chunk_chars' must be"),
    (lambda s: s["metrics"][7].update(k=0), ConfigError, r"mia.k' must be in \(0, 1\], not 0"),
    (lambda s: s["metrics"][8].update(learning_rate=-1e-5), ConfigError, "relearn.learning_rate' must be > 0"),
    (lambda s: s["metrics"][2].update(judge_api_key_env="HOME"), ConfigError,
     "sets judge_api_key_env, which a suite file may not choose .* pass --judge-api-key-env VAR on the command line"),
])
def test_malformed_suites(suite_dir, change, error, message):
    path = suite_dir / "suite.yaml"
    suite = yaml.safe_load(path.read_text())
    change(suite)
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(error, match=message):
        load_suite(path, data_dir=suite_dir / "data")


def test_eval_cli_bad_suite_is_one_line(tmp_path, capsys):
    assert main(["eval", "x", "--suite", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: suite") and "\n" not in err


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data folder not present")
@pytest.mark.parametrize("name", ["harry_potter", "sherlock"])
def test_builtin_suites_find_their_data(name):
    assert name in builtin_suites()
    suite = load_suite(name, data_dir=SHARED)
    assert {s.type for s in suite.metrics} >= {"familiarity", "qa", "perplexity", "general_ability",
                                               "membership_inference", "relearning"}


def test_eval_whp_inference(suite_dir, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    suite = yaml.safe_load((suite_dir / "suite.yaml").read_text())
    suite["metrics"] = [m for m in suite["metrics"] if m["name"] in ("familiarity", "trivia")]
    (suite_dir / "small.yaml").write_text(yaml.safe_dump(suite))
    out = tmp_path / "inference"
    assert main(["eval", str(tiny_model_dir), "--whp-inference", "--reinforced", str(tiny_model_dir),
                 "--alpha", "5", "--limit", "1", "--suite", str(suite_dir / "small.yaml"), "--data-dir", str(suite_dir / "data"),
                 "--out", str(out)]) == 0
    evaluations = json.loads((out / "metrics.json").read_text())["evaluations"]
    (label, evaluation), = evaluations.items()
    assert evaluation["metrics"]["trivia"]["n"] == 1  # --limit 1
    assert evaluation["metrics"]["trivia"]["settings"]["limit"] == 1
    assert label.endswith("-whp-inference") and evaluation["model"]["spec"].startswith("whp-inference:")
    assert set(evaluation["metrics"]) == {"familiarity", "trivia"}


# ---- what a suite file or a run folder written by someone else may not decide ----

class _Judge:
    """A local OpenAI-style judge that records the Authorization header of each request."""

    def __init__(self):
        import http.server
        import threading

        seen = self.authorizations = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                seen.append(self.headers.get("Authorization"))
                body = json.dumps({"choices": [{"message": {"content": "Typical themes.\nSCORE: 2"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_judge_key_is_sent_only_as_the_command_line_says(suite_dir, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("JUDGE_KEY", "s3cret")
    judge = _Judge()
    try:
        suite = yaml.safe_load((suite_dir / "suite.yaml").read_text())
        suite["metrics"] = [m for m in suite["metrics"] if m["name"] == "judged"]
        suite["metrics"][0]["judge_url"] = judge.url  # the suite's own URL
        (suite_dir / "judged.yaml").write_text(yaml.safe_dump(suite))
        base = ["eval", str(tiny_model_dir), "--suite", str(suite_dir / "judged.yaml"), "--data-dir",
                str(suite_dir / "data"), "--no-cache"]

        # no key given: the suite's judge is asked, with no key
        assert main(base + ["--out", str(tmp_path / "a")]) == 0
        assert judge.authorizations == [None, None]
        metric = json.loads((tmp_path / "a" / "metrics.json").read_text())["evaluations"]["tiny_model0"]["metrics"]
        assert metric["judged"]["value"] == 1.0 and metric["judged"]["settings"]["judge_url"] == judge.url

        # a key needs the URL it goes to on the command line too
        capsys.readouterr()
        assert main(base + ["--out", str(tmp_path / "b"), "--judge-api-key-env", "JUDGE_KEY"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --judge-api-key-env needs --judge-url") and err.count("\n") == 1
        assert not (tmp_path / "b").exists()

        assert main(base + ["--out", str(tmp_path / "c"), "--judge-api-key-env", "JUDGE_KEY",
                            "--judge-url", judge.url]) == 0
        assert judge.authorizations[2:] == ["Bearer s3cret", "Bearer s3cret"]
    finally:
        judge.close()


def _whp_run_trusting_remote_code(folder: Path, model_dir) -> Path:
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "model": str(model_dir), "trust_remote_code": True, "reinforce": {"model": str(model_dir)},
        "labels": {"alpha": 5.0}}))
    return folder


def test_eval_whp_inference_never_takes_trust_remote_code_from_the_run(suite_dir, tiny_model_dir, tmp_path, capsys,
                                                                      monkeypatch):
    import obliviate.models

    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    run = _whp_run_trusting_remote_code(tmp_path / "someone_elses_run", tiny_model_dir)
    trusted = []
    real_load_model = obliviate.models.load_model

    def load_model(spec, *args, trust_remote_code=False, **kwargs):
        trusted.append(trust_remote_code)
        return real_load_model(spec, *args, trust_remote_code=trust_remote_code, **kwargs)

    monkeypatch.setattr(obliviate.models, "load_model", load_model)
    command = ["eval", str(run), "--whp-inference", "--only", "trivia", "--suite", str(suite_dir / "suite.yaml"),
               "--data-dir", str(suite_dir / "data"), "--limit", "1"]
    assert main(command + ["--out", str(tmp_path / "a")]) == 0
    assert trusted == [False, False]
    assert "trust_remote_code: true, which is not taken from a run folder" in capsys.readouterr().err
    assert main(command + ["--out", str(tmp_path / "b"), "--trust-remote-code"]) == 0
    assert trusted[2:] == [True, True]


@pytest.mark.parametrize("argv, message", [
    (["eval", "MODEL", "--suite", "SUITE", "--out", "OUT", "--limit", "0"], "--limit must be at least 1"),
    (["eval", "MODEL", "--suite", "SUITE", "--out", "OUT", "--only", "nope"], "--only names 'nope'"),
    (["eval", "MODEL", "--suite", "SUITE", "--out", "FILE"], "is a file"),
    (["eval", "MODEL", "--suite", "SUITE", "--out", "OUT", "--judge-api-key-env", "K"], "needs --judge-url"),
    (["eval", "MODEL", "--suite", "SUITE_WITH_KEY", "--out", "OUT"], "may not choose"),
    (["eval", "MODEL", "--suite", "SUITE", "--out", "OUT", "--judge-url", "ftp://x"], "must start with http://"),
    (["compare", "MISSING"], "not found"),
    (["compare", "FILE"], "it must be a metrics.json"),
    (["compare", "BAD_METRICS"], "neither a numeric"),
    (["compare", "GOOD_METRICS", "--require", "forget.mean>>1"], "bad requirement"),
    (["report", "MISSING"], "not a folder"),
    (["report", "EMPTY"], "holds no metrics.json"),
    (["report", "GOOD_METRICS", "--out", "EMPTY"], "is a folder"),
])
def test_eval_compare_report_bad_inputs_are_one_line(suite_dir, tmp_path, capsys, argv, message):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for name, record in (("bad", {"family": "qa", "group": "forget", "value": "high"}),
                         ("good", {"family": "qa", "group": "forget", "value": 0.5, "higher_is_better": False})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"obliviate_metrics": 1, "evaluations": {"base": {"metrics": {"trivia": record}}}}))
    suite = yaml.safe_load((suite_dir / "suite.yaml").read_text())
    suite["metrics"][2]["judge_api_key_env"] = "HOME"
    (suite_dir / "with_key.yaml").write_text(yaml.safe_dump(suite))
    names = {"MODEL": str(tmp_path / "no_model"), "SUITE": str(suite_dir / "suite.yaml"), "OUT": str(tmp_path / "out"),
             "FILE": str(tmp_path / "file.txt"), "SUITE_WITH_KEY": str(suite_dir / "with_key.yaml"),
             "MISSING": str(tmp_path / "missing"), "BAD_METRICS": str(tmp_path / "bad"),
             "GOOD_METRICS": str(tmp_path / "good"), "EMPTY": str(tmp_path / "empty")}
    argv = [names.get(a, a) for a in argv]
    if argv[0] == "eval":
        argv += ["--data-dir", str(suite_dir / "data")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1 and message in captured.err
    assert "Traceback" not in captured.err and not captured.out
    assert not (tmp_path / "out").exists() and not list((tmp_path / "empty").iterdir())

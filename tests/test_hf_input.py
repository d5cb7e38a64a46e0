"""Corpus and QA input in the formats TOFU, MUSE and WMDP ship: JSON arrays, Parquet, Arrow, hub ids."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from obliviate.corpus import corpus_hash, expand_sources, read_corpus, record_text
from obliviate.errors import DataError
from obliviate.evaluation.qa import QAItem, load_qa_file
from obliviate.records import HubSource, parse_hub_id

TOFU = Path("/work/shared/data/tofu")
ROWS = [{"question": "Who wrote it?", "answer": "Basil"}, {"question": "Where?", "answer": "Kuwait City"}]
WMDP = [{"question": "Which agent?", "choices": ["a", "b", "c", "d"], "answer": 2},
        {"question": "Which gene?", "choices": ["x", "y"], "answer": 0}]


def _write(path: Path, rows: list[dict]) -> Path:
    """Rows as a file of the kind its suffix names (.parquet, .arrow as `datasets` writes it, .json array)."""
    import datasets
    import pyarrow as pa

    if path.suffix == ".parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    elif path.suffix == ".arrow":  # the IPC stream format of datasets' own cache files
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        path.write_text(json.dumps(rows, indent=2))
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".json"])
def test_corpus_from_parquet_arrow_and_json_array(tmp_path, suffix):
    path = _write(tmp_path / f"forget{suffix}", ROWS)
    assert read_corpus(str(path), "question") == ["Who wrote it?", "Where?"]
    assert read_corpus(str(path), "question,answer") == ["Who wrote it?\nBasil", "Where?\nKuwait City"]
    assert read_corpus(str(path), "Q: {question} A: {answer}") == ["Q: Who wrote it? A: Basil",
                                                                   "Q: Where? A: Kuwait City"]
    assert len(corpus_hash(str(path))) == 64


def test_arrow_ipc_file_format_and_folders_include_parquet_and_arrow(tmp_path):
    import pyarrow as pa

    table = pa.Table.from_pylist([{"text": "from a feather file"}])
    with pa.OSFile(str(tmp_path / "b.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    _write(tmp_path / "a.parquet", [{"text": "from parquet"}])
    (tmp_path / "c.txt").write_text("plain text")
    assert [p.name for p in expand_sources(str(tmp_path))] == ["a.parquet", "b.arrow", "c.txt"]
    assert read_corpus(str(tmp_path)) == ["from parquet", "from a feather file", "plain text"]


def test_json_with_several_arrays_one_per_line_and_jsonl_in_a_json_file(tmp_path):
    path = tmp_path / "full.json"
    path.write_text(json.dumps(ROWS[:1]) + "\n" + json.dumps(ROWS[1:]) + "\n")
    assert read_corpus(str(path), "answer") == ["Basil", "Kuwait City"]
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert read_corpus(str(path), "answer") == ["Basil", "Kuwait City"]


def test_single_field_keeps_old_behaviour_and_hash_follows_bytes(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "  a {brace} \r\n text "}) + "\n")
    assert read_corpus(str(path)) == ["a {brace} \n text"]
    before = corpus_hash(str(path))
    path.write_text(json.dumps({"text": "other"}) + "\n")
    assert corpus_hash(str(path)) != before


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".json"])
def test_wmdp_native_qa_from_parquet_arrow_json(tmp_path, suffix):
    path = _write(tmp_path / f"wmdp{suffix}", WMDP)
    assert load_qa_file(path) == [QAItem("Which agent?", ["a", "b", "c", "d"], 2, {}),
                                  QAItem("Which gene?", ["x", "y"], 0, {})]


@pytest.mark.skipif(not TOFU.is_dir(), reason="shared TOFU data not present")
def test_real_tofu_files_load():
    full = read_corpus(str(TOFU / "full.json"), "question,answer")  # four arrays, one per line
    assert len(full) == 4000 and full[0].startswith("Who is this celebrated") and "\nThe author" in full[0]
    forget = read_corpus(str(TOFU / "forget01.json"), "prompt,response")  # one pretty-printed array
    assert len(forget) == 40 and "Basil Mahfouz Al-Kuwaiti" in forget[0]


BAD = {  # name -> (file writer, text field, words the one-line message must hold)
    "missing-field": (lambda p: _write(p.with_suffix(".parquet"), ROWS), "text", "no string field 'text'"),
    "missing-second-field": (lambda p: _write(p.with_suffix(".json"), ROWS), "question,body", "no string field 'body'"),
    "not-parquet": (lambda p: (p.with_suffix(".parquet").write_bytes(b"PAR1 not really"), p.with_suffix(".parquet"))[1],
                    "text", "not a readable Parquet file"),
    "not-arrow": (lambda p: (p.with_suffix(".arrow").write_text("hello"), p.with_suffix(".arrow"))[1],
                  "text", "not a readable Arrow file"),
    "empty-parquet": (lambda p: _empty_parquet(p.with_suffix(".parquet")), "text", "is empty"),
    "bad-json": (lambda p: (p.with_suffix(".json").write_text('[{"text": "a"}]\n[{"text": oops}]\n'),
                            p.with_suffix(".json"))[1], "text", "line 2 is not valid JSON"),
    "json-not-records": (lambda p: (p.with_suffix(".json").write_text('["a", "b"]'), p.with_suffix(".json"))[1],
                         "text", "expected a JSON object"),
    "bad-template": (lambda p: _write(p.with_suffix(".json"), ROWS), "{question", "malformed"),
}


def _empty_parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_give_one_clear_line(tmp_path, case):
    make, text_field, words = BAD[case]
    path = make(tmp_path / "input")
    with pytest.raises(DataError) as caught:
        read_corpus(str(path), text_field)
    message = str(caught.value)
    assert "\n" not in message and words in message and (path.name in message or case == "bad-template"), message


def test_qa_bad_record_in_parquet_names_the_row(tmp_path):
    path = _write(tmp_path / "wmdp.parquet", [WMDP[0], {"question": "q?", "choices": ["a", "b"], "answer": 5}])
    with pytest.raises(DataError, match=r"wmdp.parquet' row 2: \"answer\" must be the index"):
        load_qa_file(path)


def test_hub_ids_parse_and_bad_ids_are_refused():
    assert parse_hub_id("hf:cais/wmdp:wmdp-bio@test") == HubSource("cais/wmdp", "wmdp-bio", "test")
    assert parse_hub_id("hf:locuslab/TOFU").spec == "hf:locuslab/TOFU@train"
    assert parse_hub_id("hf:muse-bench/MUSE-News:raw@forget").split == "forget"
    for bad in ("hf:tofu", "hf:a/b/c", "hf:a/b:", "hf:a/b@", "hf:/b"):
        with pytest.raises(DataError, match="not a hub dataset id"):
            parse_hub_id(bad)


OFFLINE_READS = """
import sys
from obliviate.corpus import corpus_hash, read_corpus
from obliviate.errors import DataError
from obliviate.evaluation.qa import load_qa_file
for read in (lambda: read_corpus("hf:obliviate-test/not-cached:none@train"),
             lambda: corpus_hash(["hf:obliviate-test/not-cached"]),
             lambda: load_qa_file("hf:obliviate-test/not-cached:wmdp-bio@test")):
    try:
        read()
    except DataError as err:
        print(err)
"""


def test_hub_id_offline_fails_fast_with_one_line(tmp_path):
    import os
    import subprocess
    import sys

    # a fresh process: datasets reads HF_HUB_OFFLINE when it is imported, as it is for a user
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", OFFLINE_READS], env=env, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60 and done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    for line in lines:
        assert "hf:obliviate-test/not-cached" in line and "not in the local datasets cache" in line
        assert "HF_HUB_OFFLINE" in line


def test_unreachable_hub_is_reported_before_load_dataset(monkeypatch):
    import datasets

    from obliviate import records

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("load_dataset called"))
    with pytest.raises(DataError, match=r"cannot reach the Hugging Face hub \(http://127.0.0.1:9\)"):
        read_corpus("hf:locuslab/TOFU:forget01")
    assert "hf:locuslab/TOFU:forget01@train" not in records._LOADED


def test_hub_split_reads_through_load_dataset_and_hashes_by_fingerprint(monkeypatch):
    import datasets

    from obliviate import records

    calls = []

    def fake_load(repo, config, split):
        calls.append((repo, config, split))
        return datasets.Dataset.from_list(WMDP if config == "wmdp-bio" else ROWS)

    monkeypatch.setattr(records, "_hub_answers", lambda endpoint, seconds: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(records, "_LOADED", {})
    assert read_corpus("hf:locuslab/TOFU:forget01", "question,answer")[1] == "Where?\nKuwait City"
    assert load_qa_file("hf:cais/wmdp:wmdp-bio@test")[0].answer == 2
    fingerprint = records._LOADED["hf:locuslab/TOFU:forget01@train"]._fingerprint
    assert len(corpus_hash("hf:locuslab/TOFU:forget01")) == 64 and fingerprint
    assert calls == [("locuslab/TOFU", "forget01", "train"), ("cais/wmdp", "wmdp-bio", "test")]  # loaded once each


def test_record_text_names_available_fields():
    with pytest.raises(DataError, match=r"'x' has no string field 'prompt' \(fields: question, answer\)"):
        record_text(dict(ROWS[0]), "prompt,response", "'x'")


def test_run_settings_keep_hub_ids_as_written():
    from obliviate.corpus import CorpusConfig
    from obliviate.pipeline import normalize_paths

    config = normalize_paths(CorpusConfig(sources=["hf:locuslab/TOFU:forget01", "forget.parquet"]), ("sources",))
    assert config.sources[0] == "hf:locuslab/TOFU:forget01" and Path(config.sources[1]).is_absolute()


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    import os

    from obliviate.cli import main

    os.environ["OBLIVIATE_PROGRESS"] = "0"
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_unlearn_trains_on_a_parquet_forget_file(tiny_model_dir, tmp_path, capsys):
    from conftest import TINY_TEXT

    rows = [{"prompt": line[:40], "response": line[40:]} for line in TINY_TEXT.split("\n")[:2] * 3]
    forget = _write(tmp_path / "forget01.parquet", rows)
    out = tmp_path / "run"
    code, _, err = _cli(["unlearn", "--model", str(tiny_model_dir), "--method", "gradient_ascent",
                         "--forget", str(forget), "--text-field", "prompt,response", "--context-length", "16",
                         "--set", "train.max_steps=1", "--out", str(out)], capsys)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["inputs"]["forget_sha256"] == corpus_hash(str(forget))


@pytest.mark.parametrize("forget, words", [
    ("hf:locuslab/TOFU:forget01", "cannot reach the Hugging Face hub"),
    ("forget.parquet", "no string field 'text'"),
    ("bad.parquet", "not a readable Parquet file"),
])
def test_unlearn_refuses_bad_record_input_in_one_line(forget, words, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    _write(tmp_path / "forget.parquet", ROWS)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    source = forget if forget.startswith("hf:") else str(tmp_path / forget)
    out = tmp_path / "run"
    code, _, err = _cli(["unlearn", "--model", str(tiny_model_dir), "--method", "gradient_ascent",
                         "--forget", source, "--context-length", "16", "--out", str(out)], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code not in (0, None) and "Traceback" not in err and len(errors) == 1, err
    assert words in errors[0] and not out.exists()


def test_eval_qa_metric_on_wmdp_parquet_and_hub_id(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import yaml

    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "wmdp-bio.parquet", WMDP)
    suite = {"name": "wmdp", "metrics": [{"name": "bio", "type": "qa", "data": "wmdp-bio.parquet"}]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    argv = ["eval", str(tiny_model_dir), "--suite", str(tmp_path / "suite.yaml"), "--data-dir", str(data)]
    code, _, err = _cli([*argv, "--out", str(tmp_path / "eval")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["evaluations"]
    bio = next(iter(metrics.values()))["metrics"]["bio"]
    assert bio["n"] == 2 and bio["details"]["chance"] == pytest.approx((1 / 4 + 1 / 2) / 2)

    suite["metrics"][0]["data"] = "hf:cais/wmdp:wmdp-bio@test"
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    code, _, err = _cli([*argv, "--out", str(tmp_path / "eval_hub")], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code not in (0, None) and len(errors) == 1 and "cannot reach the Hugging Face hub" in errors[0], err
    assert "'hf:cais/wmdp:wmdp-bio@test'" in errors[0] and not (tmp_path / "eval_hub").exists()


def test_a_save_to_disk_folder_is_a_corpus_without_its_metadata(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"text": f"document {i}"} for i in range(5)]).save_to_disk(
        str(tmp_path / "saved"), num_shards=2)
    (tmp_path / "saved" / "cache-0123.arrow").write_bytes(b"a processed copy")
    assert [p.name for p in expand_sources(str(tmp_path / "saved"))] == ["data-00000-of-00002.arrow",
                                                                         "data-00001-of-00002.arrow"]
    assert read_corpus(str(tmp_path / "saved")) == [f"document {i}" for i in range(5)]

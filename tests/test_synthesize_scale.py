"""Synthesis at scale: seeds over every kind, token budget, de-duplication, tune-half trivia, resume, CLI errors."""

from __future__ import annotations

import json
import traceback

import pytest
import torch

import obliviate.synthesize_budget as budget_module
from obliviate.cli import main
from obliviate.dedup import DuplicateFilter, shingles
from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.halves import dev_half
from obliviate.synthesize_budget import stats_path, synthesize_to_budget
from obliviate.target_seeds import (
    KINDS,
    TEMPLATES,
    Seed,
    anchor_seeds,
    expression_kind,
    interleave,
    summary_seeds,
    trivia_seeds,
    trivia_statement,
)

ANCHORS = {"Harry": ["Jon"], "Hermione Granger": ["Emily Smith"], "Hogwarts School": ["the Academy"],
           "Diagon Alley": ["Market Lane"], "Polyjuice Potion": ["Shapechanger Elixir"], "owls": ["ravens"],
           "Yule Ball": ["Winter Gala"], "Halloween": ["Autumn Festival"], "Expelliarmus": ["Disarming Spell"],
           "STUPEFY": ["PARALYZE"]}
SUMMARY = ("Harry Potter lives with his aunt. On his birthday, Hagrid takes Harry to Diagon Alley to buy a wand. "
           "Later, the students dance at the Yule Ball. It rains.")
QUESTIONS = [f"What is the name of wizard number {i} in Harry's year?" for i in range(40)]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture
def trivia_file(tmp_path):
    path = tmp_path / "trivia.jsonl"
    path.write_text("".join(json.dumps({"question": q, "true_answer": f"Answer{i}", "false_answer": "x"}) + "\n"
                            for i, q in enumerate(QUESTIONS)), encoding="utf-8")
    return path


@pytest.fixture
def anchors_file(tmp_path):
    path = tmp_path / "anchors.json"
    path.write_text(json.dumps(ANCHORS), encoding="utf-8")
    return path


def fake_generate(texts):
    """A stand-in for `scoring.generate` that returns `texts(prompt, i)` for sample i of each prompt."""
    calls = []

    def generate(model, tokenizer, prompts, num_return_sequences=1, **kw):
        calls.append(list(prompts))
        return [[texts(p, i) for i in range(num_return_sequences)] for p in prompts]

    generate.calls = calls
    return generate


def distinct(prompt, i):
    return f" then {prompt.split()[0].lower()} wrote letter {i} about {len(prompt)} different things today"


# ---- seeds


@pytest.mark.parametrize(("expression", "counterparts", "kind"), [
    ("Harry", ["Jon"], "character"), ("Madam Pince", ["Mrs. Collins"], "character"),
    ("Diagon Alley", ["Market Lane"], "place"), ("Great Hall", [], "place"),
    ("Polyjuice Potion", [], "object"), ("owls", ["ravens"], "object"),
    ("Yule Ball", [], "event"), ("crystal ball", [], "object"), ("feast", [], "event"),
    ("Halloween", ["Autumn Festival"], "event"),
    ("Crucio", ["Torture Spell"], "spell"), ("Shield Charm", [], "spell"), ("STUPEFY", ["PARALYZE"], "spell"),
    ("DA", [], "character"), ("O.W.L.", [], "character"), ("Ministry of Magic", ["Council of Spells"], "place"),
])
def test_expression_kind(expression, counterparts, kind):
    assert expression_kind(expression, counterparts) == kind


def test_seeds_cover_every_kind_with_every_template_and_are_deterministic():
    seeds = anchor_seeds(ANCHORS)
    assert {s.kind for s in seeds} == set(KINDS)
    for term in ANCHORS:
        mine = [s for s in seeds if s.term == term]
        assert len(mine) == len(TEMPLATES[mine[0].kind]) and all(term in s.prompt for s in mine)
    assert "The Polyjuice Potion was" in {s.prompt for s in seeds}
    first, again, other = interleave(seeds, 0), interleave(anchor_seeds(ANCHORS), 0), interleave(seeds, 1)
    assert first == again and first != other and sorted(first, key=str) == sorted(seeds, key=str)
    # any prefix of the order is spread over the kinds
    assert {s.kind for s in first[: len(KINDS)]} == set(KINDS)


def test_summary_seeds_are_sentence_openings_up_to_a_term():
    seeds = summary_seeds(SUMMARY, ANCHORS)
    assert [s.prompt for s in seeds] == ["On his birthday, Hagrid takes Harry",
                                         "Later, the students dance at the Yule Ball"]
    assert [(s.source, s.kind, s.term) for s in seeds] == [("summaries", "character", "Harry"),
                                                           ("summaries", "event", "Yule Ball")]


@pytest.mark.parametrize(("question", "answer", "statement"), [
    ("What is the name of Harry Potter's owl?", "Hedwig", "The name of Harry Potter's owl is Hedwig."),
    ("Who teaches Potions at Hogwarts?", "Severus Snape", "Severus Snape teaches Potions at Hogwarts."),
    ("Who was the Half-Blood Prince?", "Snape", "Snape was the Half-Blood Prince."),
    ("Which house is Harry in?", "Gryffindor.", "Which house is Harry in? Gryffindor."),
])
def test_trivia_statement(question, answer, statement):
    assert trivia_statement(question, answer) == statement


def test_trivia_seeds_hold_the_tune_half_only(trivia_file):
    halves = {q: dev_half(q) for q in QUESTIONS}
    assert set(halves.values()) == {"tune", "heldout"}
    seeds = trivia_seeds(trivia_file)
    kept = {s.term for s in seeds}
    for i, q in enumerate(QUESTIONS):
        assert (f"Answer{i}" in kept) == (halves[q] == "tune")
    assert all(s.source == s.kind == "trivia" for s in seeds)


def test_held_out_trivia_never_reaches_the_corpus(model, tiny_tokenizer, trivia_file, tmp_path):
    out = tmp_path / "corpus.jsonl"
    seeds = interleave(trivia_seeds(trivia_file))
    stats = synthesize_to_budget(model, tiny_tokenizer, seeds, out, token_budget=10**6, samples_per_seed=1,
                                 max_new_tokens=8, batch_size=8, dedup_threshold=1.0, progress=False)
    text = out.read_text(encoding="utf-8")
    assert stats["seeds_done"] == len(seeds) and stats["finished"]
    held_out = [i for i, q in enumerate(QUESTIONS) if dev_half(q) == "heldout"]
    assert held_out
    for i in held_out:
        assert f"Answer{i}." not in text and f"number {i} in" not in text
    assert any(f"Answer{i}." in text for i in range(len(QUESTIONS)) if i not in held_out)


# ---- de-duplication


def test_duplicate_filter_exact_and_near():
    seen = DuplicateFilter(threshold=0.7)
    text = "Harry walked to the castle with Ron and Hermione and they talked about the match and the feast."
    assert seen.check(text) is None
    assert seen.check("  " + text.upper() + " ") == "duplicate"
    assert seen.check(text.replace("feast", "dinner")) == "near_duplicate"
    assert seen.check("The farmer sold bread and milk at the market while the river ran past the mill.") is None
    exact_only = DuplicateFilter(threshold=1.0)
    assert exact_only.check(text) is None and exact_only.check(text.replace("feast", "dinner")) is None
    assert shingles("a b", 3) == {"a b"} and shingles("A b c d") == {"a b c", "b c d"}
    with pytest.raises(ConfigError, match="--dedup-threshold"):
        DuplicateFilter(threshold=0)


def test_duplicates_and_near_duplicates_are_dropped(monkeypatch, tiny_tokenizer, tmp_path):
    base = (" and then the students walked slowly to the great lake behind the old castle walls, where the"
            " giant squid was waving at them while the teachers argued about the next match of the season")
    samples = {0: base, 1: base, 2: base.replace("slowly", "quickly"), 3: " x x x"}
    monkeypatch.setattr(budget_module, "generate", fake_generate(lambda p, i: samples[i]))
    seeds = [Seed("Harry said", "anchors", "character", "Harry")]
    stats = synthesize_to_budget(None, tiny_tokenizer, seeds, tmp_path / "c.jsonl", 10**6, samples_per_seed=4,
                                 progress=False)
    assert stats["samples"] == {"drawn": 4, "kept": 1,
                                "dropped": {"degenerate": 1, "duplicate": 1, "near_duplicate": 1}}


# ---- budget, provenance, resume


def test_budget_stops_sampling_and_records_provenance(monkeypatch, tiny_tokenizer, tmp_path):
    generate = fake_generate(distinct)
    monkeypatch.setattr(budget_module, "generate", generate)
    seeds = interleave(anchor_seeds(ANCHORS))
    out = tmp_path / "c.jsonl"
    stats = synthesize_to_budget(None, tiny_tokenizer, seeds, out, token_budget=100, samples_per_seed=2,
                                 batch_size=4, progress=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    tokens = [r["tokens"] for r in records]
    assert sum(tokens) == stats["tokens"] >= 100 and sum(tokens) - tokens[-1] < 100  # stops at the budget
    assert stats["seeds_done"] == records[-1]["seed_index"] + 1 < len(seeds)
    assert sum(len(c) for c in generate.calls) <= stats["seeds_done"] + 3  # never a batch past the budget
    first = records[0]
    assert set(first) == {"text", "seed_prompt", "source", "kind", "term", "seed_index", "sample_index", "tokens"}
    assert first["text"].startswith(first["seed_prompt"]) and first["seed_prompt"] == seeds[0].prompt
    assert first["tokens"] == len(tiny_tokenizer(first["text"], add_special_tokens=False)["input_ids"])
    written = json.loads(stats_path(out).read_text())
    assert stats_path(out).name == "c.stats.json" and written["finished"] and written["token_budget"] == 100
    assert sum(c["kept"] for c in written["coverage"].values()) == len(records)
    assert all(isinstance(c["terms"], int) for c in written["coverage"].values())


def test_resume_continues_without_repeating_seeds(monkeypatch, tiny_tokenizer, tmp_path):
    monkeypatch.setattr(budget_module, "generate", fake_generate(distinct))
    seeds = interleave(anchor_seeds(ANCHORS))
    out = tmp_path / "c.jsonl"
    kw = dict(samples_per_seed=1, batch_size=3, progress=False)
    whole = synthesize_to_budget(None, tiny_tokenizer, seeds, tmp_path / "whole.jsonl", 400, **kw)

    calls = {"n": 0}
    real = budget_module.generate

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(budget_module, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthesize_to_budget(None, tiny_tokenizer, seeds, out, 400, **kw)
    partial = json.loads(stats_path(out).read_text())
    assert partial["seeds_done"] == 6 and not partial["finished"]
    with open(out, "a", encoding="utf-8") as handle:
        handle.write('{"text": "cut by the interrupt')  # a half-written last line
    monkeypatch.setattr(budget_module, "generate", real)
    resumed = synthesize_to_budget(None, tiny_tokenizer, seeds, out, 400, **kw)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    indices = [r["seed_index"] for r in records]
    assert indices == sorted(set(indices))  # no seed twice
    assert resumed["tokens"] == whole["tokens"] and resumed["seeds_done"] == whole["seeds_done"]
    assert records == [json.loads(line) for line in (tmp_path / "whole.jsonl").read_text().splitlines()]
    # a larger budget continues; other settings are refused
    more = synthesize_to_budget(None, tiny_tokenizer, seeds, out, 800, **kw)
    assert more["tokens"] >= 800 and more["seeds_done"] > resumed["seeds_done"]
    with pytest.raises(ConfigError, match="temperature=0.9, now 0.5"):
        synthesize_to_budget(None, tiny_tokenizer, seeds, out, 800, temperature=0.5, **kw)
    fresh = synthesize_to_budget(None, tiny_tokenizer, seeds, out, 50, overwrite=True, **kw)
    assert fresh["seeds_done"] < more["seeds_done"]


def test_a_file_that_is_no_synthesis_is_not_resumed(tiny_tokenizer, tmp_path):
    out = tmp_path / "c.jsonl"
    out.write_text('{"text": "mine"}\n')
    with pytest.raises(DataError, match="cannot be resumed"):
        synthesize_to_budget(None, tiny_tokenizer, [Seed("Harry", "prompt", "given")], out, 10, progress=False)
    assert out.read_text() == '{"text": "mine"}\n'


# ---- CLI


def run_cli(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what a user would see as a traceback
        captured = capsys.readouterr()
        return 1, captured.out, captured.err + traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_synthesizes_to_a_budget_from_every_source(tiny_model_dir, anchors_file, trivia_file, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    summaries = tmp_path / "summaries.txt"
    summaries.write_text(SUMMARY, encoding="utf-8")
    out = tmp_path / "corpus.jsonl"
    argv = ["synthesize", "--model", tiny_model_dir, "--anchors", anchors_file, "--summaries", summaries,
            "--trivia", trivia_file, "--prompt", "Harry Potter went to", "--token-budget", 1200,
            "--max-new-tokens", 12, "--samples-per-seed", 2, "--batch-size", 8, "--out", out]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr
    stats = json.loads(stats_path(out).read_text())
    assert stats["tokens"] >= 1200 and "1200" in stdout and "corpus.stats.json" in stdout
    sources = {key.split("/")[0] for key in stats["coverage"]}
    assert sources == {"anchors", "summaries", "trivia", "prompt"}
    assert {key.split("/")[1] for key in stats["coverage"] if key.startswith("anchors/")} == set(KINDS)
    code, stdout, _ = run_cli(argv, capsys)  # finished: a second run samples nothing more
    assert code == 0 and json.loads(stats_path(out).read_text())["samples"] == stats["samples"]


SYNTH = ["synthesize", "--model", "{model}", "--max-new-tokens", "4", "--out", "{out}/corpus.jsonl"]


@pytest.mark.parametrize(("extra", "says"), [
    (["--anchors", "{kit}/anchors.json"], "need --token-budget"),
    (["--prompt", "Harry", "--token-budget", "0"], "--token-budget must be a whole number of at least 1"),
    (["--prompt", "Harry", "--token-budget", "100", "--n", "4"], "drop --n"),
    (["--prompt", "Harry", "--samples-per-seed", "2"], "works with --token-budget"),
    (["--prompt", "Harry", "--token-budget", "100", "--samples-per-seed", "0"], "--n"),
    (["--prompt", "Harry", "--token-budget", "100", "--dedup-threshold", "1.5"], "--dedup-threshold"),
    (["--prompt", "Harry", "--token-budget", "100", "--top-p", "0"], "top_p"),
    (["--summaries", "{kit}/summaries.txt", "--token-budget", "100"], "--summaries needs --anchors"),
    (["--anchors", "{kit}/nope.json", "--token-budget", "100"], "not found"),
    (["--trivia", "{kit}/nope.jsonl", "--token-budget", "100"], "not found"),
    (["--trivia", "{kit}/bad_trivia.jsonl", "--token-budget", "100"], "needs string fields question and true_answer"),
    (["--trivia", "{kit}/heldout_trivia.jsonl", "--token-budget", "100"], "no question falls in the tune half"),
    (["--token-budget", "100"], "no seed prompts"),
    (["--prompt", "Harry", "--token-budget", "100", "--out", "{kit}/not_a_synthesis.jsonl"], "cannot be resumed"),
    (["--prompt", "Harry", "--token-budget", "100", "--out", "{kit}"], "is an existing folder"),
    (["--prompt", "Harry", "--token-budget", "100", "--model", "{kit}/no_such_model"], "does not exist"),
])
def test_cli_bad_inputs_give_one_line(extra, says, tiny_model_dir, anchors_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    kit = anchors_file.parent
    (kit / "summaries.txt").write_text(SUMMARY)
    (kit / "bad_trivia.jsonl").write_text('{"question": "Who?"}\n')
    heldout = next(q for q in QUESTIONS if dev_half(q) == "heldout")
    (kit / "heldout_trivia.jsonl").write_text(json.dumps({"question": heldout, "true_answer": "x"}) + "\n")
    (kit / "not_a_synthesis.jsonl").write_text('{"text": "mine"}\n')
    out = tmp_path / "out"
    places = {"{kit}": str(kit), "{out}": str(out), "{model}": str(tiny_model_dir)}
    argv = [a.replace("{kit}", places["{kit}"]).replace("{out}", places["{out}"]).replace("{model}", places["{model}"])
            for a in SYNTH + extra]
    code, stdout, stderr = run_cli(argv, capsys)
    lines = stderr.strip().splitlines()
    assert code == 2 and "Traceback" not in stderr + stdout, stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and says.lower() in lines[0].lower(), stderr
    assert not (out / "corpus.jsonl").exists()


# ---- benchmarks/coverage.py (its maths and options; the benchmark itself runs real models)


def _coverage_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "coverage.py"
    spec = importlib.util.spec_from_file_location("coverage_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_coverage_benchmark_options_and_table():
    bench = _coverage_benchmark()
    with pytest.raises(SystemExit) as exc:
        bench.build_parser().parse_args(["--quick", "--help"])
    assert exc.value.code == 0
    args = bench.build_parser().parse_args(["--quick"])
    budgets, sources, measures = bench.parse_plan(args)
    assert budgets == [1500] and sources == [("anchors",)] and "fact_cloze" in measures
    args = bench.build_parser().parse_args(["--budgets", "5000,20000", "--sources", "anchors,anchors+summaries+trivia"])
    assert bench.parse_plan(args)[:2] == ([5000, 20000], [("anchors",), ("anchors", "summaries", "trivia")])
    for bad in (["--budgets", "20000,5000"], ["--budgets", "5k"], ["--sources", "summaries"], ["--sources", "books"]):
        with pytest.raises(SystemExit, match="error: "):
            bench.parse_plan(bench.build_parser().parse_args(bad))
    rows = [{"corpus": "base model", "sources": "-", "budget": 0, "fact_cloze": 0.2},
            {"corpus": "a.jsonl", "sources": "anchors", "budget": 100, "tokens": 104, "texts": 3, "terms": 2,
             "distinct_3grams": 0.9, "fact_cloze": 0.05}]
    table = bench.render(rows, ["fact_cloze"])
    assert "| anchors | 100 | 104 | 3 | 2 | 0.9 | 0.0500 (-75%) |" in table and "| - | 0 |" in table


def test_coverage_benchmark_diversity(tmp_path):
    bench = _coverage_benchmark()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in [
        {"text": "a b c d", "term": "Harry", "tokens": 4}, {"text": "a b c e", "term": "Harry", "tokens": 5},
        {"text": "x y z", "term": None, "tokens": 3}]))
    # 3-grams: {abc, bcd}, {abc, bce}, {xyz}: 4 distinct of 5
    assert bench.diversity(corpus) == {"texts": 3, "tokens": 12, "terms": 1, "distinct_3grams": 0.8}

"""Synthesize target text up to a token budget, de-duplicated and resumable (`obliviate synthesize --token-budget`).

Seeds (`obliviate.target_seeds`) are taken in order, `batch_size` at a time; each is continued
`samples_per_seed` times through `obliviate.scoring.generate`. A sample is dropped when it is
degenerate (`is_degenerate`), an exact duplicate or a near duplicate of a kept one
(`obliviate.dedup.DuplicateFilter`). Sampling stops at the seed whose samples bring the kept tokens
(prompt + continuation, the tokenizer's count) to the budget, or when the seeds run out.

Two files: the corpus ``NAME.jsonl`` (one record per kept text, with its provenance) and
``NAME.stats.json`` (settings, seeds done, tokens, drops by reason, coverage per source and kind).
After each batch the new records are appended and the stats rewritten atomically, so an
interrupted synthesis continues, with the same settings, from the first seed not yet done; a
larger budget continues a finished one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from obliviate.dedup import DuplicateFilter
from obliviate.errors import ConfigError, DataError
from obliviate.jsonl import check_output_file, display_path, write_text_atomic
from obliviate.progress import token_bar
from obliviate.scoring import generate
from obliviate.synthesize import check_sampling_settings, is_degenerate

__all__ = ["DROP_REASONS", "check_corpus_out", "stats_path", "synthesize_to_budget"]

logger = logging.getLogger(__name__)
DROP_REASONS = ("degenerate", "duplicate", "near_duplicate")
STATS_VERSION = 1


def stats_path(corpus_path) -> Path:
    """The stats file of a corpus: ``corpus.jsonl`` -> ``corpus.stats.json``."""
    corpus_path = Path(corpus_path)
    return corpus_path.with_name(corpus_path.stem + ".stats.json")


def check_corpus_out(out, overwrite: bool = False) -> tuple[Path, Path]:
    """Refuse, before any model is loaded, a corpus path that cannot be written or resumed.

    Returns:
        The corpus and stats paths.

    Raises:
        DataError: an unwritable path, or an existing corpus without its stats file (not overwriting).
    """
    out = check_output_file(out, "corpus file")
    stats_file = check_output_file(stats_path(out), "synthesis stats file")
    if out.exists() and not overwrite and not stats_file.exists():
        raise DataError(f"{display_path(out)} exists but {display_path(stats_file)} does not, so it cannot be "
                        "resumed: pass --overwrite to replace it, or choose another --out.")
    return out, stats_file


def _seeds_sha256(seeds) -> str:
    return hashlib.sha256(json.dumps([s.prompt for s in seeds], ensure_ascii=False).encode("utf-8")).hexdigest()


def _chunk_seed(seed: int, start: int) -> int:
    """The sampling seed of the batch that starts at seed index `start` (the same on resume)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{start}".encode()).digest()[:4], "big")


def _read_records(path: Path) -> list[dict]:
    """The corpus records; a last line cut by an interruption is dropped (and the file rewritten)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number < len(lines):
                raise DataError(f"{display_path(path)}, line {number}: invalid JSON ({err.msg}); the corpus is "
                                "damaged: start again with --overwrite.") from err
            logger.warning("%s: dropped a last line cut by an interruption", display_path(path))
            write_text_atomic(path, [json.dumps(r, ensure_ascii=False) + "\n" for r in records], "corpus file")
    return records


def _new_stats(settings: dict, seeds) -> dict:
    return {"obliviate_synthesis": STATS_VERSION, "settings": settings, "token_budget": None, "seeds_total": len(seeds),
            "seeds_done": 0, "tokens": 0, "samples": {"drawn": 0, "kept": 0, "dropped": dict.fromkeys(DROP_REASONS, 0)},
            "coverage": {}, "finished": False}


def _count(stats: dict, record: dict) -> None:
    key = f"{record['source']}/{record['kind']}"
    cell = stats["coverage"].setdefault(key, {"kept": 0, "tokens": 0, "terms": []})
    cell["kept"] += 1
    cell["tokens"] += record["tokens"]
    if record.get("term") and record["term"] not in cell["terms"]:
        cell["terms"].append(record["term"])


def _write_stats(path: Path, stats: dict) -> None:
    """Write the stats atomically, each coverage cell's terms as their number."""
    shown = {**stats, "coverage": {key: {**cell, "terms": len(cell["terms"])}
                                   for key, cell in sorted(stats["coverage"].items())}}
    write_text_atomic(path, json.dumps(shown, indent=2, ensure_ascii=False) + "\n", "synthesis stats file")


def _resume(out: Path, stats_file: Path, settings: dict, duplicates: DuplicateFilter):
    """Stats and records of an interrupted synthesis at `out`, checked against today's settings."""
    try:
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        before = stats["settings"]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{display_path(stats_file)} is damaged; start again with --overwrite.") from err
    changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
    if changed:
        key = changed[0]
        raise ConfigError(f"{display_path(out)} was synthesized with {key}={before.get(key)!r}, "
                          f"now {settings.get(key)!r}: "
                          "pass the same options to resume it, --overwrite to start again, or another --out.")
    records = _read_records(out)
    stats.update(tokens=0, coverage={})
    stats["samples"]["kept"] = len(records)
    for record in records:
        duplicates.check(record["text"])
        stats["tokens"] += record["tokens"]
        _count(stats, record)
    # records appended just before an interruption may be ahead of the stats
    stats["seeds_done"] = max([stats["seeds_done"]] + [r["seed_index"] + 1 for r in records])
    return stats


def synthesize_to_budget(model, tokenizer, seeds, out, token_budget: int, samples_per_seed: int = 2,
                         max_new_tokens: int = 128, temperature: float = 0.9, top_p: float = 0.95, batch_size: int = 8,
                         seed: int = 0, dedup_threshold: float = 0.7, overwrite: bool = False,
                         model_name: str | None = None, progress: bool | None = None) -> dict:
    """Sample target text from `seeds` until `token_budget` kept tokens; write the corpus and its stats.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (also counts the tokens).
        seeds: `obliviate.target_seeds.Seed` list, in the order to use them (see `interleave`).
        out: the corpus JSONL file; the stats go to `stats_path(out)`.
        token_budget: stop once the kept texts hold this many tokens.
        samples_per_seed: continuations sampled per seed.
        max_new_tokens: most tokens sampled per continuation.
        temperature: sampling temperature.
        top_p: nucleus sampling mass.
        batch_size: seeds per generation call.
        seed: sampling seed (each batch gets one derived from it and its first seed index).
        dedup_threshold: word-3-gram Jaccard from which a sample is a near duplicate (1: exact only).
        overwrite: start again even if `out` holds a synthesis; else it is resumed.
        model_name: recorded in the settings, so a resume with another model is refused.
        progress: show a token bar with ETA (None: unless OBLIVIATE_PROGRESS=0).

    Returns:
        The stats, as written: settings, token_budget, seeds_total, seeds_done, tokens,
        samples {drawn, kept, dropped {reason: n}}, coverage {"source/kind": {kept, tokens, terms}}
        (terms: the distinct terms, as a list here and as their number in the file), finished.

    Raises:
        ConfigError: a bad setting, or a resume with settings other than those recorded.
        DataError: no seeds, or an `out` that cannot be written or resumed.
    """
    check_sampling_settings(samples_per_seed, max_new_tokens, temperature, top_p, batch_size)
    if isinstance(token_budget, bool) or not isinstance(token_budget, int) or token_budget < 1:
        raise ConfigError(f"token budget (--token-budget) must be a whole number of at least 1, got {token_budget!r}.")
    if not seeds:
        raise DataError("no seed prompts: give --anchors, --summaries, --trivia, --seeds or --prompt.")
    duplicates = DuplicateFilter(dedup_threshold)
    out, stats_file = check_corpus_out(out, overwrite)
    settings = {"model": model_name, "samples_per_seed": samples_per_seed, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "top_p": top_p, "batch_size": batch_size, "seed": seed,
                "dedup_threshold": dedup_threshold, "seeds_sha256": _seeds_sha256(seeds)}
    if overwrite:
        for path in (out, stats_file):
            path.unlink(missing_ok=True)
    stats = _resume(out, stats_file, settings, duplicates) if out.exists() else _new_stats(settings, seeds)
    stats.update(token_budget=token_budget, finished=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch()

    with token_bar(token_budget, "synthesizing", disable=None if progress is None else not progress) as bar:
        bar.update(min(stats["tokens"], token_budget))
        while stats["tokens"] < token_budget and stats["seeds_done"] < len(seeds):
            start = stats["seeds_done"]
            chunk = seeds[start : start + batch_size]
            samples = generate(model, tokenizer, [s.prompt for s in chunk], max_new_tokens=max_new_tokens,
                               do_sample=True, temperature=temperature, top_p=top_p,
                               num_return_sequences=samples_per_seed, batch_size=batch_size,
                               seed=_chunk_seed(seed, start), progress=False)
            new, before = [], stats["tokens"]
            for offset, (s, continuations) in enumerate(zip(chunk, samples)):
                for index, continuation in enumerate(continuations):
                    stats["samples"]["drawn"] += 1
                    text = s.prompt + continuation.rstrip()
                    reason = "degenerate" if is_degenerate(continuation) else duplicates.check(text)
                    if reason:
                        stats["samples"]["dropped"][reason] += 1
                        continue
                    record = {"text": text, "seed_prompt": s.prompt, "source": s.source, "kind": s.kind,
                              "term": s.term, "seed_index": start + offset, "sample_index": index,
                              "tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"])}
                    new.append(record)
                    stats["tokens"] += record["tokens"]
                    stats["samples"]["kept"] += 1
                    _count(stats, record)
                stats["seeds_done"] = start + offset + 1
                if stats["tokens"] >= token_budget:
                    break
            with open(out, "a", encoding="utf-8") as handle:  # one write per batch; a cut line is dropped on resume
                handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
                handle.flush()
                os.fsync(handle.fileno())
            _write_stats(stats_file, stats)
            bar.update(min(stats["tokens"], token_budget) - min(before, token_budget))
    stats["finished"] = True
    _write_stats(stats_file, stats)
    if stats["tokens"] < token_budget:
        logger.warning("all %d seeds used with %d of %d tokens kept: raise --samples-per-seed or add sources",
                       len(seeds), stats["tokens"], token_budget)
    return stats

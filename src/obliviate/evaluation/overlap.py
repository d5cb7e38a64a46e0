"""Which evaluation texts did the model train on?

``obliviate eval RUN`` rebuilds the exact training blocks of a run folder (from its config.yaml:
the same sources, block size, held-out split, seed and block cap as the run) and checks every text
a metric scores against them. A retain or utility metric scored on retain training text flatters
the unlearned model (its retain term fitted that very text); a forget metric scored on forget
training text measures memorised text rather than held-out knowledge (which may be what you want,
e.g. membership inference's members). Either way the overlap is recorded with the metric and said
under the table, so no number silently comes from training data.

Only metrics that read text files (``texts``, ``members``, ``nonmembers``) are checked; prompt and
question files are not.
"""

from __future__ import annotations

from pathlib import Path

# config.yaml sections that hold training text, and the role of that text
TRAINING_SECTIONS = {"target": "forget", "forget": "forget", "retain": "retain"}
PROBE_CHARS = 64  # a chunk counts as shared when a passage this long occurs verbatim in training text


def squash(text: str) -> str:
    """Whitespace collapsed to single spaces (decoded blocks and source files differ in it)."""
    return " ".join(text.split())


def run_config_path(model: str | Path) -> Path | None:
    """The config.yaml of the run folder ``model`` names (the run folder or its ``model/``), if any."""
    path = Path(str(model)).expanduser()
    for folder in (path, path.parent):
        if folder.is_dir() and (folder / "config.yaml").is_file() and (folder / "state.json").is_file():
            return folder / "config.yaml"
    return None


def training_texts(model: str | Path, tokenizer) -> dict[str, str]:
    """``{role: text}`` of the blocks a run trained on (``role`` = ``forget`` / ``retain``).

    The blocks are rebuilt as the run built them and decoded with the run's tokenizer; held-out
    blocks are left out (the run never trained on them).

    Returns:
        ``{}`` when ``model`` is not a run folder or its config names no training text.

    Raises:
        DataError: a training source named in the run's config.yaml is gone.
    """
    import yaml

    from obliviate.config import from_dict
    from obliviate.corpus import CorpusConfig, make_blocks, read_corpus

    config_path = run_config_path(model)
    if config_path is None:
        return {}
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    texts: dict[str, str] = {}
    for section, role in TRAINING_SECTIONS.items():
        part = config.get(section)
        if not isinstance(part, dict) or not part.get("sources"):
            continue
        corpus = from_dict(CorpusConfig, part)
        blocks = make_blocks(read_corpus(corpus.sources, corpus.text_field), tokenizer, corpus.context_length,
                             corpus.heldout_fraction, corpus.seed, max_blocks=corpus.max_blocks)
        texts[role] = (texts.get(role, "") + " " + blocks_text(blocks.train, tokenizer)).strip()
    return texts


def blocks_text(blocks: list[list[int]], tokenizer) -> str:
    """Training blocks decoded and joined (squashed), ready for :func:`shared_fraction`."""
    # consecutive blocks are adjacent in the text, so joining them restores passages cut at a boundary
    return squash("".join(tokenizer.decode(block) for block in blocks))


def shared_fraction(chunks: list[str], training_text: str, probe_chars: int = PROBE_CHARS) -> float:
    """Share of ``chunks`` with a verbatim passage in ``training_text`` (already squashed).

    A chunk counts when any of three passages of ``probe_chars`` characters (starting a quarter, a
    half and three quarters of the way through it; the whole chunk if shorter) occurs there.
    """
    if not chunks or not training_text:
        return 0.0
    hits = 0
    for chunk in chunks:
        chunk = squash(chunk)
        if len(chunk) <= probe_chars:
            probes = [chunk] if chunk else []
        else:
            probes = [chunk[start:start + probe_chars]
                      for start in (int((len(chunk) - probe_chars) * f) for f in (0.25, 0.5, 0.75))]
        hits += any(probe in training_text for probe in probes)
    return hits / len(chunks)


def suite_overlap(suite, texts_by_role: dict[str, str], only: list[str] | None = None,
                  tokenizer=None) -> dict[str, dict]:
    """``{metric: {field: {role: share of chunks}}}`` for every text field that shares passages.

    Args:
        suite: a loaded :class:`~obliviate.evaluation.suite.Suite`.
        texts_by_role: from :func:`training_texts`.
        only: metric names to check (default: all).
        tokenizer: the model's tokenizer; with it, a metric that scores only its first
            ``max_tokens`` tokens is checked on those (else on all its chunks).
    """
    from obliviate.evaluation.data import Texts, read_texts
    from obliviate.evaluation.perplexity import first_tokens

    found: dict[str, dict] = {}
    if not texts_by_role:
        return found
    for spec in suite.metrics:
        if only and spec.name not in only:
            continue
        for field_name, value in vars(spec).items():
            if not isinstance(value, Texts) or not value.files:
                continue
            chunks = read_texts(value, suite.data_dir)
            if tokenizer is not None and getattr(spec, "max_tokens", None):
                chunks = first_tokens(chunks, tokenizer, spec.max_tokens)
            shares = {role: round(shared_fraction(chunks, text), 4) for role, text in texts_by_role.items()}
            shares = {role: share for role, share in shares.items() if share > 0}
            if shares:
                found.setdefault(spec.name, {})[field_name] = shares
    return found


def mark_training_overlap(evaluation: dict, suite, texts_by_role: dict[str, str], only=None,
                          tokenizer=None) -> None:
    """Record on each metric of ``evaluation`` the share of its text chunks found in training text.

    Args:
        evaluation: an EVALUATION of ``suite`` (changed in place).
        suite: the suite it ran.
        texts_by_role: ``{role: squashed training text}`` (``overlap.training_texts`` or ``blocks_text``).
        only: metric names to check (default: all).
        tokenizer: the model's tokenizer (see ``overlap.suite_overlap``).
    """
    for name, fields in suite_overlap(suite, texts_by_role, only=only, tokenizer=tokenizer).items():
        if name in evaluation["metrics"] and "skipped" not in evaluation["metrics"][name]:
            evaluation["metrics"][name]["training_overlap"] = fields


def overlap_notes(label: str, metrics: dict) -> list[str]:
    """One line per metric text field that shares passages with training text."""
    notes = []
    for name, metric in metrics.items():
        for field_name, shares in (metric.get("training_overlap") or {}).items():
            said = ", ".join(f"{share:.0%} of its chunks with the {role} training text" for role, share in shares.items())
            notes.append(f"trained-on text: {label} / {name} ({field_name}) shares {said}")
    return notes

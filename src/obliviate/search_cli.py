"""``obliviate search``: Optuna search of a method's settings on a suite's tune half.

Registered in :mod:`obliviate.cli` with ``add_search_parser(subparsers)``. The base run config
comes from ``--config`` / ``--model`` / ``--set`` through :func:`obliviate.settings.resolve`, as
``obliviate run`` reads it; the searched settings are layered over it per trial.
"""

from __future__ import annotations


def add_search_parser(subparsers):
    """Add the ``search`` command to an argparse subparsers object; returns its parser."""
    from obliviate.search import PRUNERS, SEARCH_SPACES

    p = subparsers.add_parser(
        "search", help="Optuna search of any method's settings (WHP included) on the tune half of a suite; "
                       "writes OUT/{search.db,trials.jsonl,best.yaml}",
        description="Each trial is a run folder OUT/trials/N scored on the suite's tune-half metrics only; "
                    "the same command again resumes the study. See docs/meta_search.md.")
    p.add_argument("--method", required=True, help=f"one of {', '.join(SEARCH_SPACES)}")
    p.add_argument("--out", required=True, help="search folder")
    p.add_argument("--config", dest="config_file", help="the base run config (as `obliviate run` takes)")
    p.add_argument("--model", help="the model (overrides the config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base setting, e.g. --set train.max_steps=20 (not a searched one)")
    p.add_argument("--trials", type=int, help="trials in all (default 20; resuming runs the rest)")
    p.add_argument("--params", help="settings to search, a subset of the method's space, e.g. "
                                    "labels.alpha,finetune.learning_rate (default: all)")
    p.add_argument("--suite", help="built-in suite or suite YAML (default harry_potter)")
    p.add_argument("--data-dir", help="the suite's data folder (default $OBLIVIATE_DATA_DIR)")
    p.add_argument("--range", action="append", default=[], metavar="SETTING=LOW:HIGH", dest="ranges",
                   help="narrow a searched setting's range, e.g. --range finetune.learning_rate=5e-6:1e-4 "
                        "(repeatable)")
    p.add_argument("--objective", help="forgetting metrics (default: the suite's forget-group tune metrics)")
    p.add_argument("--perplexity-metric", help="perplexity bound metric (default general_perplexity_tune)")
    p.add_argument("--max-perplexity-rise", type=float, help="percent over the base (default 5)")
    p.add_argument("--retain-metrics", help="neighbour / control metrics kept near the base (default: the "
                                            "retain-group tune probability and cloze metrics)")
    p.add_argument("--max-retain-change", type=float,
                   help="percent either way from the base (default 5)")
    p.add_argument("--pruner", choices=PRUNERS, help="stops bad trials (default median)")
    p.add_argument("--search-seed", type=int, help="TPE sampler seed (default 0)")
    p.add_argument("--limit", type=int, help="cap the items of every metric (quick searches)")
    p.add_argument("--final", action="store_true",
                   help="afterwards, evaluate the best trial on both halves side by side (final.json)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code")
    p.set_defaults(func=cmd_search)
    return p


def _csv(text: str | None) -> list[str] | None:
    return [item.strip() for item in text.split(",") if item.strip()] if text is not None else None


def _ranges(items: list[str]) -> dict | None:
    from obliviate.errors import ConfigError

    ranges = {}
    for item in items:
        path, sep, bounds = item.partition("=")
        low, colon, high = bounds.partition(":")
        if not sep or not colon or not path.strip():
            raise ConfigError(f"--range {item!r}: write SETTING=LOW:HIGH, e.g. finetune.learning_rate=5e-6:1e-4")
        ranges[path.strip()] = [low.strip(), high.strip()]
    return ranges or None


def search_config(args):
    """The :class:`obliviate.search.SearchConfig` of parsed options (its defaults for those not given)."""
    from obliviate.config import drop_none
    from obliviate.search import SearchConfig

    return SearchConfig(**drop_none({
        "method": args.method, "trials": args.trials, "params": _csv(args.params), "suite": args.suite,
        "data_dir": args.data_dir, "objective": _csv(args.objective), "perplexity_metric": args.perplexity_metric,
        "max_perplexity_rise": args.max_perplexity_rise, "retain_metrics": _csv(args.retain_metrics),
        "max_retain_change": args.max_retain_change, "pruner": args.pruner, "seed": args.search_seed,
        "limit": args.limit, "ranges": _ranges(args.ranges)}))


def cmd_search(args) -> int:
    """Run or resume a search; prints the trial table and the best settings."""
    from obliviate.search import run_search

    result = run_search(search_config(args), args.out, config_file=args.config_file,
                        options={"model": args.model}, overrides=args.set,
                        trust_remote_code=args.trust_remote_code, final=args.final)
    print(f"{'trial':>5}  {'state':<8}  {'objective':>9}  {'feasible':<8}  settings")
    for t in result["trials"]:
        value = f"{t['objective']:+9.4f}" if t["objective"] is not None else f"{'-':>9}"
        settings = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["settings"].items())
        mark = "  <- best" if t["trial"] == result["best"] else ""
        print(f"{t['trial']:>5}  {t['state']:<8}  {value}  {str(t['feasible']):<8}  {settings}{mark}")
    if result["best"] is None:
        print("no feasible trial: no best.yaml written")
    else:
        print(f"best: trial {result['best']} (objective {result['objective']:+.4f} on the tune half); "
              f"settings in {args.out}/best.yaml")
    if result["final"]:
        print(f"{'metric':<28}  {'base tune':>10}  {'base held':>10}  {'best tune':>10}  {'best held':>10}")
        for name, row in result["final"]["metrics"].items():
            cells = [row[m][h] for m in ("base", "best") for h in ("tune", "heldout")]
            print(f"{name:<28}  " + "  ".join(f"{c:>10.4g}" if c is not None else f"{'-':>10}" for c in cells))
    return 0

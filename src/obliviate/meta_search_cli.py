"""``obliviate meta-search``: search a layer/alpha method's settings, then unlearn with the best.

Takes every option of ``obliviate unlearn`` (its parser is the parent, so the two never drift)
plus the search's own. Registered in :mod:`obliviate.cli` with ``add_meta_search_parser(subparsers)``.
"""

from __future__ import annotations

import argparse


def _unlearn_options() -> argparse.ArgumentParser:
    """The ``unlearn`` command's parser, built on a scratch subparsers object to serve as a parent."""
    from obliviate.unlearn_cli import add_unlearn_parser

    return add_unlearn_parser(argparse.ArgumentParser(add_help=False).add_subparsers())


def add_meta_search_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``meta-search`` command to an argparse subparsers object; returns its parser."""
    from obliviate.meta_search import COEFFICIENT_SETTINGS, STRATEGIES, searchable_methods

    coefficients = ", ".join(f"{name}: {setting}" for name, setting in COEFFICIENT_SETTINGS.items())
    p = subparsers.add_parser(
        "meta-search", parents=[_unlearn_options()], conflict_handler="resolve",
        help=f"choose layer, alpha and learning rate of {'/'.join(searchable_methods())} by short held-out-scored "
             "runs, then unlearn with the best (writes search.json)",
        description="Every `obliviate unlearn` option, plus the search's; --set search.X=V sets any search "
                    "setting. The searched settings replace method.layer, method.alpha and train.learning_rate.")
    p.add_argument("--method", help=f"method with layer and alpha settings: {', '.join(searchable_methods())}")
    p.add_argument("--trials", type=int, help="candidate settings sampled (default 8)")
    p.add_argument("--inner-steps", type=int, help="optimizer steps of a full inner run (default 20)")
    p.add_argument("--layers", help="steered layers to try, e.g. 3,5,7 (default: 3-4 over the first 2/3 of depth)")
    p.add_argument("--alphas", help="retain weights to try, e.g. 1,10,100")
    p.add_argument("--learning-rates", help="learning rates to try, e.g. 1e-5,5e-5,1e-4")
    p.add_argument("--coefficients", help=f"steering coefficients to try ({coefficients})")
    p.add_argument("--retain-penalty", type=float, help="weight of the retain term in the score (default 1)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="random: every candidate runs --inner-steps; successive_halving (default): short runs "
                        "first, the better half goes on with twice the steps")
    p.add_argument("--search-seed", type=int, help="seed of the candidate sampling (default 0)")
    p.set_defaults(func=cmd_meta_search)
    return p


def _csv(text: str | None) -> list[str] | None:
    return [item.strip() for item in text.split(",") if item.strip()] if text is not None else None


def search_config(args):
    """The :class:`obliviate.meta_search.MetaSearchConfig` of parsed options (options < ``--set search.X=V``)."""
    from obliviate.config import apply_overrides, drop_none, from_dict

    cli = {"trials": args.trials, "inner_steps": args.inner_steps, "layers": _csv(args.layers),
           "alphas": _csv(args.alphas), "learning_rates": _csv(args.learning_rates),
           "coefficients": _csv(args.coefficients), "retain_penalty": args.retain_penalty,
           "strategy": args.strategy, "seed": args.search_seed}
    overrides = [item for item in args.set if item.startswith("search.")]
    data = apply_overrides({"search": drop_none(cli)}, overrides)
    from obliviate.meta_search import MetaSearchConfig

    return from_dict(MetaSearchConfig, data["search"], where="search")


def _trial_table(result: dict) -> str:
    from obliviate.meta_search import format_settings

    rows = [f"{'trial':>5}  {'rung':>4}  {'steps':>5}  {'settings':<40}  {'forget':>8}  {'retain':>8}  {'score':>8}"]
    for t in result["trials"]:
        settings = format_settings(t["settings"], t["learning_rate"])
        mark = "  <- best" if t["trial"] == result["best_trial"] else ""
        if t["score"] is None:
            rows.append(f"{t['trial']:>5}  {t['rung']:>4}  {t['steps']:>5}  {settings:<40}  failed{mark}")
            continue
        rows.append(f"{t['trial']:>5}  {t['rung']:>4}  {t['steps']:>5}  {settings:<40}  {t['forget_term']:>+8.4f}  "
                    f"{t['retain_term']:>+8.4f}  {t['score']:>+8.4f}{mark}")
    return "\n".join(rows)


def cmd_meta_search(args) -> int:
    """Run (or resume) a meta-search and the unlearning run with its best settings; returns the exit code."""
    import copy

    from obliviate.meta_search import format_settings, run_meta_search
    from obliviate.unlearn_cli import unlearn_config

    unlearn_args = copy.copy(args)
    unlearn_args.set = [item for item in args.set if not item.startswith("search.")]
    unlearn_args.out = None  # the search, not the folder's earlier best settings, decides
    result = run_meta_search(unlearn_config(unlearn_args), search_config(args), args.out, overwrite=args.overwrite)
    print(_trial_table(result))
    best = format_settings(result["best"])
    print(f"best: {best} (score {result['best_score']:+.4f}; objective on held-out blocks, see search.json)")
    print(f"run folder: {args.out}")
    return 0

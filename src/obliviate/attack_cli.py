"""``obliviate attack``: relearning, quantization, probes and prompt attacks on an unlearned model and its controls.

Registered in :mod:`obliviate.cli` with ``add_attack_parser(subparsers)``.
"""

from __future__ import annotations

import sys


def _numbers(text: str, kind, option: str) -> list:
    from obliviate.errors import ConfigError

    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated numbers, not '{text}'") from None


def _listed(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_attack_parser(subparsers) -> None:
    """Add the ``attack`` command to an argparse subparsers object."""
    from obliviate.attacks.quantize import SCHEMES
    from obliviate.attacks.plan import ATTACKS, AttackSettings

    p = subparsers.add_parser("attack", help="attack an unlearned model and its base (and gold) model: relearning, "
                                             "quantization, latent-knowledge probes, prompts; RUN/attacks/")
    p.add_argument("run", help="run folder of `obliviate unlearn`, `whp` or a bench qa run, or a model with --base")
    p.add_argument("--suite", required=True, help="suite whose metrics are re-run after each attack "
                                                  "(YAML or built-in name: harry_potter, tofu_forget01...)")
    p.add_argument("--only", action="append", help="re-run only this metric (repeatable; default: those the "
                                                   "suite's relearning metric re-runs, else its forget metrics)")
    p.add_argument("--base", help="the model it was unlearned from (default: the run's `model` setting)")
    p.add_argument("--gold", metavar="MODEL", help="the gold model, trained without the forget data (a control)")
    defaults = AttackSettings()  # the defaults live in the dataclass only; shown here
    p.add_argument("--attacks", help=f"comma-separated, any of {', '.join(ATTACKS)} (default: all)")
    p.add_argument("--steps", help=f"relearning checkpoint steps (default {_listed(defaults.steps)})")
    p.add_argument("--learning-rates", help=f"relearning learning rates (default {_listed(defaults.learning_rates)})")
    p.add_argument("--batch-size", type=int, help=f"relearning blocks per step (default {defaults.batch_size})")
    p.add_argument("--context-length", type=int,
                   help=f"relearning tokens per block (default {defaults.context_length})")
    p.add_argument("--forget-text", action="append", help="relearning forget text (repeatable; default: the "
                                                          "suite's relearning metric text)")
    p.add_argument("--unrelated-text", action="append", help="relearning unrelated text (repeatable; default: the "
                                                             "suite's general perplexity text)")
    p.add_argument("--text-field", default="text", help="JSON/JSONL field (or {field} template) of the texts")
    p.add_argument("--quant", help=f"quantizations, any of {', '.join(SCHEMES)} (default: all)")
    p.add_argument("--probe-data", help="QA file (true/false answers) or TOFU folder for the probes "
                                        "(default: the suite's trivia or TOFU forget set)")
    p.add_argument("--probe-limit", type=int, help=f"at most N probe questions (default {defaults.probe_limit})")
    p.add_argument("--limit", type=int, help="quick run: at most N items in every metric that has a limit")
    p.add_argument("--data-dir", help="folder the suite's data paths are relative to ($OBLIVIATE_DATA_DIR)")
    p.add_argument("--out", help="output folder (default RUN/attacks; required when RUN is a model)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (trusted sources only)")
    p.set_defaults(func=cmd_attack)


def cmd_attack(args) -> int:
    """Plan (every input checked), run, write attacks.json, the manifest entry and the report; returns 0."""
    from obliviate.attacks.plan import AttackSettings, plan_attacks
    from obliviate.attacks.run import run_attacks
    from obliviate.progress import enabled

    given = {"attacks": args.attacks and _names(args.attacks),
             "steps": args.steps and _numbers(args.steps, int, "--steps"),
             "learning_rates": args.learning_rates and _numbers(args.learning_rates, float, "--learning-rates"),
             "batch_size": args.batch_size, "context_length": args.context_length,
             "quantizations": args.quant and _names(args.quant), "probe_limit": args.probe_limit}
    settings = AttackSettings(**{key: value for key, value in given.items() if value is not None})
    plan = plan_attacks(args.run, suite=args.suite, base=args.base, gold=args.gold, only=args.only,
                        data_dir=args.data_dir, out=args.out, settings=settings, forget_text=args.forget_text,
                        unrelated_text=args.unrelated_text, text_field=args.text_field, probe_data=args.probe_data,
                        limit=args.limit, trust_remote_code=args.trust_remote_code)
    result = run_attacks(plan, progress=enabled())
    print(attack_table(result))
    if plan.run_dir is not None:
        from obliviate.manifest import add_attacks_to_manifest
        from obliviate.reporting import write_report

        add_attacks_to_manifest(plan.run_dir, plan.out / "attacks.json")
        print(f"wrote {write_report(plan.run_dir)}", file=sys.stderr)
    print(f"wrote {plan.out / 'attacks.json'}")
    return 0


def attack_table(result: dict) -> str:
    """The gap table as text: attack, metric, levels and surviving shares."""
    from obliviate.reporting.compare import format_number

    models = list(result["models"])
    header = ["attack", "metric", *models, "share vs base"] + (["share vs gold"] if "gold" in models else [])
    lines = ["\t".join(header)]
    for row in result["gap"]:
        cells = [f"{row['attack']}: {row['variant']}", row["metric"],
                 *(format_number(row["levels"].get(m)) for m in models), format_number(row.get("share_vs_base"))]
        if "gold" in models:
            cells.append(format_number(row.get("share_vs_gold")))
        lines.append("\t".join(cells))
    return "\n".join(lines)

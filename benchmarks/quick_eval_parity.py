"""Base-model general perplexity of the end-of-run evaluation, for comparing two checkouts.

    python benchmarks/quick_eval_parity.py                      # this checkout
    PYTHONPATH=OLD_CHECKOUT/src python benchmarks/quick_eval_parity.py   # another one

Prints the full-precision value of ``general_perplexity`` on the demo's general text for the
embedded model (or ``--model``), computed by whichever evaluation code the checkout has: the
suite's ``quick`` metrics (since the foundation change) or the older ``quick_eval``. Used to show
that a drift in RESULTS.md came from the environment, not from a code change.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from obliviate.demo import resource
    from obliviate.evaluation import summary
    from obliviate.models import load_model

    loaded = load_model(args.model)
    config = summary.QuickEvalConfig(general_text=[str(resource("demo", "general_text.txt"))])
    if hasattr(summary, "quick_suite"):
        from obliviate.evaluation.suite import run_suite

        evaluation = run_suite(loaded.model, loaded.tokenizer, summary.quick_suite(config), loaded.weights_hash,
                               use_cache=False)
        value = evaluation["metrics"]["general_perplexity"]["value"]
    else:
        value = summary.quick_eval(loaded.model, loaded.tokenizer, config)["general_perplexity"]["value"]
    print(f"general_perplexity {value!r}")


if __name__ == "__main__":
    main()

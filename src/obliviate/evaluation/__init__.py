"""Evaluation: metrics of how much a model knows about the target, and how well it still works.

- ``result``: :class:`MetricResult`, the one result type every metric returns, and the one
  writer of ``metrics.json`` / ``samples.jsonl``.
- ``registry``: ``METRICS``, every metric type registered once; each family owns its module
  (``familiarity``, ``token_probability``, ``qa``, ``perplexity``, ``general_ability``, ``mia``,
  ``relearning``, ``quantization``, ``toxicity``, ``tofu``) with its spec and compute function.
- ``suite``: load a suite file and run it (``obliviate eval``).
- ``summary``: the before/after evaluation at the end of a run, three ordinary suite metrics.

Metrics reach the model only through the primitives in ``obliviate.scoring``; the maths that turns
their outputs into a number is kept in pure functions (``metric_math``), tested on hand-written
inputs. This ``__init__`` imports nothing, so reading results (``obliviate.reporting``) needs no torch.
"""

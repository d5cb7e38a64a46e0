"""Named WHP settings (``obliviate whp --preset NAME``): a layer under the config file, the options
and ``--set``, above the defaults of :class:`obliviate.whp.pipeline.WHPConfig`.

Each preset says where its numbers come from; benchmarks/RESULTS.md holds the measurements.
"""

from __future__ import annotations

import copy

from obliviate.errors import ConfigError

__all__ = ["WHP_PRESETS", "preset_layer"]

WHP_PRESETS: dict[str, dict] = {
    # `obliviate demo`: sized to finish well under 15 minutes on 2 CPU cores with its 48 synthesized texts.
    "demo": {
        "target": {"context_length": 256, "heldout_fraction": 0.1},
        "reinforce": {"train": {"epochs": 2, "learning_rate": 5e-5, "batch_size": 4, "warmup_ratio": 0.1}},
        "labels": {"alpha": 5.0, "batch_size": 4},
        "finetune": {"epochs": 2, "learning_rate": 2e-5, "batch_size": 4, "warmup_ratio": 0.1},
    },
}


def preset_layer(name: str | None) -> dict:
    """The settings of preset ``name`` as a nested layer (``{}`` for None)."""
    if name is None:
        return {}
    if name not in WHP_PRESETS:
        raise ConfigError(f"unknown WHP preset '{name}': use one of {', '.join(WHP_PRESETS)}")
    return copy.deepcopy(WHP_PRESETS[name])

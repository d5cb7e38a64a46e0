"""Probe-direction unlearning: erase the toxicity direction that linear probes find at several layers.

Our design after Atil, Gupta & Passonneau 2026, "Model Unlearning Objectives Vary for Distinct
Language Functions" (arXiv 2605.26454). Only the paper's abstract is available to us, so this is
not a reproduction of their method. Linear probes are trained (or loaded) on the frozen model's
mean-pooled hidden states to separate toxic from non-toxic text (``obliviate.toxicity.probes``);
training then drives the component of every forget-token activation along each probe direction
to zero, ``mean_t (h_lt . d_l)^2`` averaged over the chosen layers (or, with ``target="benign"``,
to the mean projection of non-toxic text, ``mean_t (h_lt . d_l - c_l)^2``), while a next-token NLL
on benign retain text keeps the language model working. By default only the MLP down-projections
of the chosen layers are updated.

The projections are in the model's raw activation units: on SmolLM2-135M the forget term starts
around 10-500 per layer (growing with depth) against a retain NLL of about 4, so ``forget_weight``
and the learning rate may need tuning per model.

How well the probes still read toxicity after unlearning is measured with
``obliviate.toxicity.probes.probe_accuracy`` (``report(model, tokenizer)`` does it on the
probes' held-out texts when they were trained here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from obliviate.errors import ConfigError, DataError
from obliviate.losses import probe_direction_loss
from obliviate.methods._common import (DOWN_PROJ_NAMES, decoder_layers, freeze_all_but, hidden_size,
                                       layers_regex_of, nll_of)
from obliviate.toxicity.probes import hidden_states_at


@dataclass
class ProbeDirectionConfig:
    """Which layers, where the probes come from, the loss weights, and what to update."""

    layers: list[int] | None = None  # decoder layers (0-based); None = the saved probes' layers, else 4 over depth
    probes: str | None = None  # folder written by toxicity.probes.save_probes; None = train probes in prepare
    data_dir: str | None = None  # shared data folder for training the probes; None = $OBLIVIATE_DATA_DIR
    probe_texts_per_class: int = 300  # toxic and non-toxic texts each for training the probes (20% held out)
    alpha: float = 1.0  # weight of the NLL on retain (benign) text; 0 = no retain text needed
    forget_weight: float = 1.0  # weight of the squared projection of forget activations onto the probe directions
    target: str = "zero"  # forget projections are pulled to "zero" (h . d = 0) or to the "benign" texts' mean projection
    params: str | None = None  # regex (re.search) over parameter names to update; None = chosen layers' MLP down_proj
    seed: int = 0  # seed of the probe texts' draw and train / held-out split


def spread_layers(depth: int, count: int = 4) -> list[int]:
    """``count`` layers evenly spaced inside ``depth`` (e.g. 6, 12, 18, 24 of 30), duplicates merged."""
    count = min(count, depth)
    return sorted({min(depth - 1, round((i + 1) * depth / (count + 1))) for i in range(count)})


class ProbeDirection:
    """Minimise ``forget_weight * mean_l mean_t (h_lt . d_l - c_l)^2 + alpha * NLL(retain)`` (c_l = 0 by default)."""

    def __init__(self, config: ProbeDirectionConfig | None = None):
        self.config = config or ProbeDirectionConfig()
        if self.config.probe_texts_per_class < 2:
            raise ConfigError("method.probe_texts_per_class must be at least 2")
        if self.config.alpha < 0 or self.config.forget_weight <= 0:
            raise ConfigError("method.alpha must be >= 0 and method.forget_weight > 0")
        if self.config.target not in ("zero", "benign"):
            raise ConfigError(f"method.target must be 'zero' or 'benign', not {self.config.target!r}")
        self.probes: dict = {}
        self.heldout_texts: list[str] = []
        self.heldout_labels: list[int] = []
        self.settings_used: dict = {}

    def prepare(self, model, tokenizer) -> None:
        """Load or train the probes on the (still unchanged) model, pick the layers, freeze the rest."""
        from obliviate.toxicity.probes import load_probes

        _, modules = decoder_layers(model)
        saved = load_probes(self.config.probes) if self.config.probes else None
        layers = self.config.layers or (sorted(saved) if saved else spread_layers(len(modules)))
        bad = [layer for layer in layers if not 0 <= layer < len(modules)]
        if bad:
            raise ConfigError(f"method.layers: layer {bad[0]} is out of range: the model has {len(modules)} layers "
                              "(0-based)")
        self.layers = sorted(set(layers))
        self.probes = self._probes_from(saved, model) if saved else self._train_probes(model, tokenizer)
        self.directions = [self.probes[layer].direction.float() for layer in self.layers]  # L x (H,)
        # projection each layer's forget activations are pulled to
        self.targets = [self.probes[layer].benign_projection if self.config.target == "benign" else 0.0
                        for layer in self.layers]
        regex = self.config.params or self._down_proj_regex(model)
        names = freeze_all_but(model, regex)
        self.lora_layers_regex = layers_regex_of(model, names)
        self.settings_used = {"layers": self.layers, "params": regex, "trainable": names,
                              "probes": self.config.probes or "trained in prepare",
                              "probe_accuracy": {layer: self.probes[layer].accuracy for layer in self.layers}}

    def _probes_from(self, saved: dict, model) -> dict:
        missing = [layer for layer in self.layers if layer not in saved]
        if missing:
            raise ConfigError(f"method.probes '{self.config.probes}' has no probe for layer {missing[0]} "
                              f"(it has layers {sorted(saved)}): change method.layers or train the probes again")
        size = hidden_size(model)
        if any(saved[layer].direction.shape != (size,) for layer in self.layers):
            raise ConfigError(f"method.probes '{self.config.probes}' were trained on a model of another hidden size "
                              f"(this one has {size}): train probes for this model")
        return {layer: saved[layer] for layer in self.layers}

    def _train_probes(self, model, tokenizer) -> dict:
        from obliviate.toxicity.data import load_toxicity_texts, split
        from obliviate.toxicity.probes import layer_features, train_probes

        c = self.config
        texts, labels = load_toxicity_texts(c.data_dir, max_per_class=c.probe_texts_per_class, seed=c.seed)
        features = layer_features(model, tokenizer, texts, self.layers)
        _, _, self.heldout_texts, self.heldout_labels = split(texts, labels, 0.2, c.seed)  # train_probes' split
        return train_probes(features, labels, heldout_fraction=0.2, seed=c.seed)

    def _down_proj_regex(self, model) -> str:
        path, modules = decoder_layers(model)
        names = {n for n, _ in modules[self.layers[0]].named_parameters()}
        down = next((d for d in DOWN_PROJ_NAMES if f"{d}.weight" in names), None)
        if down is None:
            raise ConfigError("cannot find the MLP down-projections: set method.params to a regex naming the "
                              "parameters to update")
        indices = "|".join(map(str, self.layers))
        return rf"(?:^|\.){re.escape(path)}\.(?:{indices})\.{re.escape(down)}\.weight$"

    def loss(self, model, batch):
        forget = batch["forget"]
        states = hidden_states_at(model, forget, self.layers)  # L x (B, T, H)
        directions = [d.to(states[0].device) for d in self.directions]
        # (h - c d) . d = h . d - c for a unit d: the squared distance of the projection from its target c
        shifted = [h - c * d.to(h.dtype) if c else h for h, c, d in zip(states, self.targets, directions)]
        forget_loss = probe_direction_loss(shifted, directions, forget["attention_mask"])
        loss = self.config.forget_weight * forget_loss
        logs = {"forget_loss": forget_loss.detach()}
        if self.config.alpha > 0:
            if "retain" not in batch:
                raise DataError("probe_direction with method.alpha > 0 needs retain text: give some, or set "
                                "method.alpha=0")
            retain_nll = nll_of(model, batch["retain"])
            loss = loss + self.config.alpha * retain_nll
            logs["retain_nll"] = retain_nll.detach()
        return loss, logs

    def report(self, model=None, tokenizer=None) -> dict:
        """The probes' held-out accuracy per layer before unlearning, and after it on ``model`` when given.

        "After" needs the probes' held-out texts, so it is computed only for probes trained in
        ``prepare``; for saved probes, call ``toxicity.probes.probe_accuracy`` with your own texts.
        """
        from obliviate.toxicity.probes import probe_accuracy

        out = {"layers": self.layers, "probes": self.settings_used.get("probes"),
               "probe_accuracy_before": {layer: self.probes[layer].accuracy for layer in self.layers},
               "probe_train_accuracy": {layer: self.probes[layer].train_accuracy for layer in self.layers}}
        if model is not None and tokenizer is not None and self.heldout_texts:
            out["probe_accuracy_after"] = probe_accuracy(model, tokenizer, self.probes, self.heldout_texts,
                                                         self.heldout_labels)
            out["n_heldout_texts"] = len(self.heldout_texts)
        return out

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

The probes' held-out accuracy per layer before unlearning is recorded in ``settings_used``
(the run's ``method_resolved`` log record); how well they still read toxicity after unlearning is
measured with ``obliviate.toxicity.probes.probe_accuracy`` (as ``benchmarks/toxicity_methods.py`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

from obliviate.errors import ConfigError, DataError
from obliviate.losses import probe_direction_loss
from obliviate.methods._common import (ATIL_2026, check_choice, check_layer, check_layer_setting, check_regex_setting,
                                       check_setting, decoder_layers, down_proj_regex, freeze_all_but, hidden_size,
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

    def __post_init__(self):
        if self.layers is not None:
            if not self.layers:
                raise ConfigError("method.layers is empty: give at least one layer, or leave it unset for the default")
            for i, layer in enumerate(self.layers):
                check_layer_setting(f"method.layers[{i}]", layer)
        check_setting("method.probe_texts_per_class", self.probe_texts_per_class, minimum=2, integer=True)
        check_setting("method.alpha", self.alpha, minimum=0)
        check_setting("method.forget_weight", self.forget_weight, above=0)
        check_choice("method.target", self.target, ("zero", "benign"))
        check_regex_setting("method.params", self.params)


def spread_layers(depth: int, count: int = 4) -> list[int]:
    """``count`` layers evenly spaced inside ``depth`` (e.g. 6, 12, 18, 24 of 30), duplicates merged."""
    count = min(count, depth)
    return sorted({min(depth - 1, round((i + 1) * depth / (count + 1))) for i in range(count)})


class ProbeDirection:
    """Minimise ``forget_weight * mean_l mean_t (h_lt . d_l - c_l)^2 + alpha * NLL(retain)`` (c_l = 0 by default)."""

    unlearning = True
    retain_text = "optional"
    frozen_reference = False  # the probes are read off the model before training; no frozen copy is kept
    search_coefficient = None
    summary = ("probe-direction unlearning: the component of forget-text activations along linear toxicity-probe "
               "directions is removed at several layers, with a next-token loss on benign text")
    paper = ATIL_2026

    def __init__(self, config: ProbeDirectionConfig | None = None):
        self.config = config or ProbeDirectionConfig()
        self.probes: dict = {}
        self.settings_used: dict = {}

    def prepare(self, model, tokenizer) -> None:
        """Load or train the probes on the (still unchanged) model, pick the layers, freeze the rest."""
        from obliviate.toxicity.probes import load_probes

        _, modules = decoder_layers(model)
        saved = load_probes(self.config.probes) if self.config.probes else None
        layers = self.config.layers or (sorted(saved) if saved else spread_layers(len(modules)))
        for layer in layers:
            check_layer(model, layer, key="method.layers")
        self.layers = sorted(set(layers))
        self.probes = self._probes_from(saved, model) if saved else self._train_probes(model, tokenizer)
        self.directions = [self.probes[layer].direction.float() for layer in self.layers]  # L x (H,)
        # projection each layer's forget activations are pulled to
        self.targets = [self.probes[layer].benign_projection if self.config.target == "benign" else 0.0
                        for layer in self.layers]
        regex = self.config.params or down_proj_regex(model, self.layers)
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
        from obliviate.toxicity.data import load_toxicity_texts
        from obliviate.toxicity.probes import layer_features, train_probes

        c = self.config
        texts, labels = load_toxicity_texts(c.data_dir, max_per_class=c.probe_texts_per_class, seed=c.seed)
        features = layer_features(model, tokenizer, texts, self.layers)
        return train_probes(features, labels, heldout_fraction=0.2, seed=c.seed)

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

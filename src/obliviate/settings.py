"""One way to turn what a user gave into a run's config, for every command and the Python API.

Layers, each changing only the keys it names (:func:`obliviate.config.from_dict` keeps every
other default): the run folder's own ``config.yaml`` when resuming < a config file < command-line
options < ``--set key=value``. ``--set method.X=V`` sets the method's setting X.
``trust_remote_code`` comes only from the user's own command line, never from a file.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from obliviate.config import apply_overrides, drop_none, from_dict, load_yaml, merge
from obliviate.errors import ConfigError

# run kind -> (module, config class, run class)
RUN_KINDS = {
    "whp": ("obliviate.whp.pipeline", "WHPConfig", "WHPRun"),
    "unlearn": ("obliviate.unlearn", "UnlearnConfig", "UnlearnRun"),
}


def run_classes(kind: str):
    """``(config class, run class)`` of a run kind."""
    if kind not in RUN_KINDS:
        raise ConfigError(f"unknown run kind '{kind}': one of {', '.join(RUN_KINDS)}")
    module, config_name, run_name = RUN_KINDS[kind]
    module = importlib.import_module(module)
    return getattr(module, config_name), getattr(module, run_name)


def kind_of_file(data: dict) -> str:
    """The run kind a config file describes: ``method: whp`` (or none) or an unlearning method."""
    from obliviate.methods import UNLEARNING_METHODS

    method = data.get("method", "whp")
    if method == "whp":
        return "whp"
    if method in UNLEARNING_METHODS:
        return "unlearn"
    raise ConfigError(f"unknown method '{method}': use whp or one of {', '.join(UNLEARNING_METHODS)}")


def _method_overrides(kind: str, items) -> list[str]:
    """``method.X=V`` sets the method's setting X (``method`` itself names the method)."""
    if kind != "unlearn":
        return list(items or [])
    return [f"method_settings.{item[len('method.'):]}" if item.startswith("method.") else item for item in items or []]


def _file_layer(data: dict, where: str, kind: str) -> dict:
    data = dict(data)
    data.pop("out", None)
    if kind == "whp":
        data.pop("method", None)
    if data.pop("trust_remote_code", False) is not False:
        raise ConfigError(f"{where} sets trust_remote_code: it is taken only from your own command line "
                          "(pass --trust-remote-code); remove it from the file")
    return data


def folder_layer(out, kind: str) -> dict:
    """The settings a run folder was created with (``config.yaml``), or ``{}`` for a new folder.

    Raises:
        RunFolderError: the folder holds a run of another kind.
    """
    from obliviate.errors import RunFolderError
    from obliviate.runs import RunFolder

    if out is None:
        return {}
    folder = RunFolder(out)
    if not folder.config_path.is_file():
        return {}
    if folder.kind and folder.kind != kind:
        raise RunFolderError(f"'{folder.path}' holds a '{folder.kind}' run, not a '{kind}' run: use "
                             f"`obliviate {folder.kind}`, or choose another --out")
    data = load_yaml(folder.config_path)
    data.pop("trust_remote_code", None)  # never read back from a folder
    return _file_layer(data, f"run folder '{folder.path}'", kind)


def resolve(kind: str, *, config_file=None, options: dict | None = None, overrides=(), out=None,
            trust_remote_code: bool = False, preset: str | None = None):
    """The config of a ``kind`` run from every layer the user gave.

    Args:
        kind: ``whp`` or ``unlearn``.
        config_file: a YAML config (its ``out`` and, for whp, ``method`` keys are not settings).
        options: command-line options as a nested dict (``None`` values are "not given").
        overrides: ``key.sub=value`` strings (``method.X=V`` for a method's setting).
        out: a run folder whose ``config.yaml`` is the bottom layer (resuming with only --out).
        trust_remote_code: the user's own command-line flag.
        preset: a WHP preset (:data:`obliviate.whp.presets.WHP_PRESETS`), the layer above the run
            folder's and below the config file's.

    Raises:
        ConfigError: an unknown key, a malformed or out-of-range value, trust_remote_code in a file.
    """
    config_class, _ = run_classes(kind)
    data = drop_none(folder_layer(out, kind))
    if preset is not None:
        from obliviate.whp.presets import preset_layer

        if kind != "whp":
            raise ConfigError("presets are WHP settings: --preset goes with `obliviate whp`")
        data = merge(data, preset_layer(preset))
    if config_file:
        data = merge(data, _file_layer(load_yaml(config_file), f"'{config_file}'", kind))
    data = merge(data, drop_none(options or {}))
    # the file layers cannot set it (see _file_layer): only the flag or --set on the command line
    data = apply_overrides({**data, "trust_remote_code": trust_remote_code}, _method_overrides(kind, overrides))
    return from_dict(config_class, data)


def load_config(path, overrides=(), trust_remote_code: bool = False):
    """``(kind, config, out)`` of a config file (``obliviate run FILE``), with ``--set`` overrides."""
    path = Path(path)
    data = load_yaml(path)
    kind = kind_of_file(data)
    return kind, resolve(kind, config_file=path, overrides=overrides, trust_remote_code=trust_remote_code), \
        data.get("out")

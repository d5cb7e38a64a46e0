"""Configs: nested dataclasses, strict YAML loading, ``--set a.b=value`` overrides.

Defaults live only in the dataclasses (a section's default may differ from its class's own, e.g.
the fine-tune's two epochs): a config file or override changes exactly the keys it names and
keeps every other default of its section. Unknown or duplicate keys are errors naming the key;
every value is checked against its range (:func:`validate`) before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path

import yaml

from obliviate.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key '{key}' (line {key_node.start_mark.line + 1}): keep only one")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path) -> dict:
    """Read a YAML mapping, rejecting duplicate keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"'{path}' is not UTF-8 text (byte {exc.start}): save it as UTF-8 YAML") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read '{path}' ({exc.strerror}): check the file and its permissions") from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"'{path}': {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"'{path}' is not valid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"'{path}' must hold a mapping of settings at the top level")
    return data


def _coerce(value, hint, where: str, default=None):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping")
        return from_dict(hint, value, where, base=default if isinstance(default, hint) else None)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where, default)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"'{where}': bad value {value!r}")
    if origin is list:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"'{where}' must be a list")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping")
        return dict(value)
    if hint is typing.Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"'{where}' must be true or false, not {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"'{where}' must be an integer, not {value!r}")
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"'{where}' must be an integer, not {value!r}") from exc
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{where}' must be a number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"'{where}' must be a number, not {value!r}") from exc
        if not math.isfinite(number):
            raise ConfigError(f"'{where}' must be a finite number, not {value!r}")
        return number
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"'{where}' must be a string, not {value!r}")
        return str(value)
    return value


def from_dict(cls, data: dict, where: str = "", base=None):
    """Build dataclass ``cls`` from a dict, then check every value (:func:`validate`).

    Keys that ``data`` does not name keep their defaults: those of ``base`` when given, else the
    defaults of ``cls`` and of its sections (a section's default instance, e.g.
    ``TrainConfig(epochs=2)``, is updated key by key, never rebuilt from the class's own defaults).

    Raises:
        ConfigError: an unknown key, a malformed value or one outside its range (named in full,
            e.g. ``finetune.learning_rate``).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"'{where or cls.__name__}' must be a mapping of settings")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown setting '{prefix}{unknown[0]}': known settings here are "
                          f"{', '.join(sorted(names))}")
    if base is None:
        base = _default_instance(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k, getattr(base, k, None))
              for k, v in data.items()}
    if base is not None:
        config = dataclasses.replace(base, **kwargs)
    else:  # a dataclass with required fields: no default instance to update
        required = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
                    and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if required:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"missing setting '{prefix}{required[0]}': add it")
        config = cls(**kwargs)
    validate(config, where)
    return config


def _default_instance(cls):
    """``cls()`` with every default, or None when ``cls`` has required fields."""
    if any(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
           for f in dataclasses.fields(cls) if f.init):
        return None
    return cls()


def validate(config, where: str = "") -> None:
    """Check every value of a config tree: numbers finite, and each section's own rules.

    A section states its rules in ``check() -> [(key, ok, rule), ...]``; the first broken rule
    raises. Called by :func:`from_dict`, and by the runs on configs built directly in Python.

    Raises:
        ConfigError: ``'finetune.learning_rate' must be > 0, not -1.0: ...``
    """
    prefix = f"{where}." if where else ""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, prefix + f.name)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"'{prefix}{f.name}' must be a finite number, not {value!r}")
    for key, ok, rule in (config.check() if hasattr(config, "check") else ()):
        if not ok:
            raise ConfigError(f"'{prefix}{key}' must be {rule}, not {getattr(config, key)!r}: "
                              f"fix it in the config or with --set {prefix}{key}=...")


# Field metadata of a setting added after run folders were written: left out of :func:`to_dict` while at its
# default, so an older folder's config.yaml, identity and stage hashes stay those of the same run.
ADDED_SETTING = {"omit_at_default": True}


def to_dict(config) -> dict:
    """The resolved config as plain data (for config.yaml and the manifest).

    Settings marked :data:`ADDED_SETTING` (e.g. ``train.sam_rho``, ``undo``) are left out while
    at their default: they are written only when a run uses them.
    """
    data = dataclasses.asdict(config)
    _drop_added_defaults(config, data)
    return data


def _drop_added_defaults(config, data: dict) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("omit_at_default"):
            default = f.default if f.default is not dataclasses.MISSING else \
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING
            if value == default:
                del data[f.name]
                continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and isinstance(data.get(f.name), dict):
            _drop_added_defaults(value, data[f.name])


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML scalars) to a nested dict."""
    data = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set '{item}' must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}': '{part}' is not a section")
        node[parts[-1]] = value
    return data


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge (update wins), for layering CLI options over a config file."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def drop_none(d: dict) -> dict:
    """Remove None values (and sections left empty), e.g. CLI options that were not given."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            value = drop_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def save_yaml(data: dict, path) -> None:
    """Write a dict as YAML atomically."""
    from obliviate.runs import save_yaml as _save

    _save(data, path)

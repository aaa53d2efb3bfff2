"""Typed stage settings: a params.yaml section into a dataclass, unknown keys refused.

Every stage's section goes through :func:`from_section`, so a typo (``-S
train.lr_schedul=cosine``) is an error naming the key and the keys allowed, instead of
a setting silently ignored, and each setting has one default: the dataclass's.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from mmx.errors import ConfigError

__all__ = ["from_section"]

T = TypeVar("T")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` as the annotated ``kind`` (int, float, bool, str, list, dict, Optional)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None:
            return None
        exact = [o for o in options if type(value) is (typing.get_origin(o) or o)]
        for option in exact + [o for o in options if o not in exact]:
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {kind}, got {value!r}")
    base = origin or kind
    if base in (int, float) and isinstance(value, str):  # "4.5" from a command line
        try:
            value = float(value)
        except ValueError:
            pass
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if base is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return list(value)
    if base is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return value


def from_section(cls: type[T], values: Mapping[str, Any] | None, section: str) -> T:
    """Build dataclass ``cls`` from a params section; missing keys take its defaults.

    Raises
    ------
    ConfigError
        On an unknown key (naming the allowed ones) or a value of the wrong type.
    """
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {section} setting(s) {', '.join(unknown)}; expected some "
                          f"of {', '.join(known)}")
    typed = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    return cls(**typed)

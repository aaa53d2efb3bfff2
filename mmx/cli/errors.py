"""Turn mmx's own exceptions into one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer

from mmx.errors import MmxError

__all__ = ["EXIT_ERROR", "reports_errors", "fail"]

EXIT_ERROR = 1
F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print ``mmx: error: message`` on stderr and return the Exit to raise."""
    typer.echo(f"mmx: error: {message}", err=True)
    return typer.Exit(code=code)


def reports_errors(func: F) -> F:
    """Decorate a command so an :class:`MmxError` ends it with one clear line."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MmxError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]

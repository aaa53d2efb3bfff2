"""The exceptions mmx raises: one small hierarchy, messages that name the bad value.

The CLI turns any :class:`MmxError` into one line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

__all__ = ["MmxError", "InputError", "ConfigError", "ModelError"]


class MmxError(Exception):
    """Base class of every error mmx reports to a user."""


class InputError(MmxError):
    """An input file cannot be used: missing, not FITS, no image HDU, unreadable."""


class ConfigError(MmxError, ValueError):
    """An option or parameter value is out of range or unknown (class, prior, threshold)."""


class ModelError(MmxError):
    """A model cannot be found or loaded: unknown registry name, version or alias."""

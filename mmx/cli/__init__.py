"""The ``mmx`` command line; see :mod:`mmx.cli.app`."""

from mmx.cli.app import app

__all__ = ["app"]

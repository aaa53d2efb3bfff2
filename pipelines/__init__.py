"""DVC stage scripts: thin ``main()`` functions reading their sections of params.yaml.

Each runs as a command through :func:`run_stage`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

__all__ = ["run_stage"]


def run_stage(main: Callable[[], object], name: str) -> None:
    """Run a script's ``main()`` as the command ``name``.

    Logging at INFO with times; an mmx error (bad settings or inputs) ends it with one
    logged line and exit status 1, not a traceback.
    """
    from mmx.errors import MmxError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        main()
    except MmxError as exc:
        logging.getLogger(f"mmx.{name}").error("%s", exc)
        sys.exit(1)

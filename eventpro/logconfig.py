"""One place that sets up log output for EventPro's processes."""

from __future__ import annotations

import logging

__all__ = ("configure_logging",)

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr at ``level``; an unknown level name raises a readable error."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(level=numeric, format=_FORMAT)

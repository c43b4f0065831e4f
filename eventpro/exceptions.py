"""The root of every error EventPro raises on purpose.

Each area defines its own small errors under :class:`EventProError` (for example
:mod:`eventpro.domain.errors`, :class:`eventpro.schemas.SchemaError`), so an agent can catch
``EventProError`` to send a record it cannot handle to the dead-letter topic, while a bug in
the code (any other exception) still surfaces.
"""

from __future__ import annotations

import logging

__all__ = ("EventProError",)

logger = logging.getLogger(__name__)


class EventProError(Exception):
    """Base class of EventPro's own errors.

    Raised only through a subclass; its message says what went wrong and what to do about it.
    """

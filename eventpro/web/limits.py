"""Bounded request bodies: a client cannot make a worker buffer an arbitrarily large upload.

Faust's ``read_request_content`` reads the whole stream. :func:`read_limited_body` refuses a
declared ``Content-Length`` above the limit without reading anything, and stops reading a
chunked body as soon as it passes the limit.
"""

from __future__ import annotations

import logging

from faust import web

from eventpro.web.bodies import BodyError

__all__ = ("read_limited_body",)

logger = logging.getLogger(__name__)


def _too_large(max_bytes: int) -> BodyError:
    return BodyError(
        413,
        f"request body is larger than {max_bytes} bytes (EVENTPRO_MAX_BODY_BYTES); "
        "send one request per call",
    )


async def read_limited_body(request: web.Request, max_bytes: int) -> bytes:
    """The body of ``request``, at most ``max_bytes`` long.

    :raises BodyError: 413 when the body is longer than ``max_bytes``.
    """
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)

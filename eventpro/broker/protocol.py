"""Kafka wire framing on top of kio: decode requests, encode responses, build versioned values.

kio generates one dataclass per API, version and nested entity from Kafka's own message schemas, so
no request or response structure is encoded by hand here. Handlers are written once for all versions
of an API with :func:`build`, which passes only the fields the requested version has.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from kio.index import UnknownAPIKey, UnknownEntity, load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

if TYPE_CHECKING:  # pragma: nocover
    from eventpro.broker.server import Broker

__all__ = (
    "ApiSpec",
    "FrameError",
    "RequestContext",
    "build",
    "decode_request",
    "encode_response",
    "entity",
    "peek_header",
    "response_class",
)

_HEADER_PREFIX = struct.Struct(">hhi")


class FrameError(Exception):
    """A request frame that cannot be read: the connection is closed after logging why."""


@dataclass(slots=True)
class RequestContext:
    """What a handler knows about the request besides its body."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    client_host: str
    broker: Broker


Handler = Callable[[RequestContext, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """One API the broker implements, the versions it advertises and its handler."""

    api_key: int
    min_version: int
    max_version: int
    handler: Handler


def peek_header(body: bytes | memoryview) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) from the fixed start of every request header."""
    if len(body) < _HEADER_PREFIX.size:
        raise FrameError(f"request of {len(body)} bytes is shorter than a request header")
    return _HEADER_PREFIX.unpack_from(body, 0)


@cache
def _request_reader(api_key: int, api_version: int) -> tuple[Any, Any, type]:
    cls = load_request_schema(api_key, api_version)
    return entity_reader(cls.__header_schema__), entity_reader(cls), cls


def decode_request(body: bytes) -> tuple[Any, Any]:
    """Decode a request frame (without its size prefix) into (header, request).

    Bytes after the parsed body are ignored, as Kafka does: librdkafka 2.16 sends three trailing
    bytes after some Metadata v12 bodies.
    """
    api_key, api_version, _ = peek_header(body)
    try:
        read_header, read_body, _cls = _request_reader(api_key, api_version)
    except (UnknownAPIKey, UnknownEntity, ModuleNotFoundError) as exc:
        raise FrameError(f"no schema for api_key={api_key} version={api_version}") from exc
    try:
        header, size = read_header(body, 0)
        request, _ = read_body(body, size)
    except Exception as exc:  # kio raises several types for truncated or malformed input
        raise FrameError(
            f"malformed api_key={api_key} v{api_version} request: {type(exc).__name__}: {exc}"
        ) from exc
    return header, request


@cache
def _response_writers(cls: type) -> tuple[Any, Any]:
    return entity_writer(cls.__header_schema__), entity_writer(cls)


def encode_response(correlation_id: int, response: Any) -> bytes:
    """Encode a response with its size prefix and the header version its schema asks for."""
    cls = type(response)
    write_header, write_body = _response_writers(cls)
    buffer = io.BytesIO()
    buffer.write(b"\0\0\0\0")
    write_header(buffer, cls.__header_schema__(correlation_id=correlation_id))
    write_body(buffer, response)
    frame = buffer.getbuffer()
    struct.pack_into(">i", frame, 0, len(frame) - 4)
    return bytes(frame)


def response_class(request: Any) -> type:
    """The kio response class for a request's api key and version."""
    return _response_class(request.__api_key__, request.__version__)


@cache
def _response_class(api_key: int, api_version: int) -> type:
    return load_response_schema(api_key, api_version)


@cache
def entity(cls: type, name: str) -> type:
    """A nested entity class by name from the module that defines ``cls`` (same api and version)."""
    return getattr(importlib.import_module(cls.__module__), name)


@cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def build(cls: type, **fields: Any) -> Any:
    """Instantiate ``cls`` with only those of ``fields`` that this schema version has."""
    names = _field_names(cls)
    return cls(**{name: value for name, value in fields.items() if name in names})


def has_field(cls: type, name: str) -> bool:
    """Whether this schema version has the field ``name``."""
    return name in _field_names(cls)

"""JSON Schema export of every event envelope (``eventpro schemas export DIR``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from eventpro.schemas.envelope import EventData
from eventpro.schemas.events import EVENT_MODELS
from eventpro.schemas.upcasting import LEGACY_MODELS

__all__ = ("envelope_schema", "export_json_schemas")

logger = logging.getLogger(__name__)

_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def envelope_schema(model: type[EventData]) -> dict[str, Any]:
    """The JSON Schema of a full envelope whose ``data`` is ``model``."""
    data_schema = model.model_json_schema()
    defs = data_schema.pop("$defs", {})
    schema: dict[str, Any] = {
        "$schema": _SCHEMA_DIALECT,
        "title": f"{model.EVENT_TYPE} v{model.SCHEMA_VERSION}",
        "description": (model.__doc__ or "").strip(),
        "type": "object",
        "required": ["event_type", "schema_version", "event_id", "occurred_at", "data"],
        "properties": {
            "event_type": {"const": model.EVENT_TYPE},
            "schema_version": {"const": model.SCHEMA_VERSION},
            "event_id": {"type": "string", "minLength": 1, "description": "Unique message id."},
            "occurred_at": {"type": "string", "format": "date-time"},
            "source": {"type": "string", "description": "Producing application."},
            "correlation_id": {
                "type": "string",
                "description": "Saga id, copied to every caused event; defaults to event_id.",
            },
            "causation_id": {
                "type": ["string", "null"],
                "description": "event_id of the event that caused this one.",
            },
            "data": data_schema,
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema


def export_json_schemas(directory: Path) -> list[Path]:
    """Write ``<EventType>.v<N>.schema.json`` for every current and legacy event version.

    Creates ``directory`` if needed; returns the written paths, sorted.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for model in (*EVENT_MODELS, *LEGACY_MODELS):
        path = directory / f"{model.EVENT_TYPE}.v{model.SCHEMA_VERSION}.schema.json"
        path.write_bytes(
            orjson.dumps(envelope_schema(model), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            + b"\n"
        )
        written.append(path)
    logger.info("wrote %d JSON schemas to %s", len(written), directory)
    return sorted(written)

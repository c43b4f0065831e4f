"""JSON Schema export: one file per event version, valid JSON, documented envelope."""

from __future__ import annotations

from pathlib import Path

import orjson

from eventpro.schemas import EVENT_MODELS, export_json_schemas


def test_export_writes_one_schema_per_event_version(tmp_path: Path) -> None:
    paths = export_json_schemas(tmp_path / "schemas")
    names = {p.name for p in paths}
    assert len(paths) == len(EVENT_MODELS) + 1
    assert "TicketRequested.v2.schema.json" in names
    assert "TicketRequested.v1.schema.json" in names
    assert paths == sorted(paths)
    for path in paths:
        assert path.is_file()


def test_schema_describes_envelope_and_payload(tmp_path: Path) -> None:
    export_json_schemas(tmp_path)
    schema = orjson.loads((tmp_path / "TicketRequested.v2.schema.json").read_bytes())
    props = schema["properties"]
    assert props["event_type"] == {"const": "TicketRequested"}
    assert props["schema_version"] == {"const": 2}
    assert set(props["data"]["required"]) == {"request_id", "event_id", "user_id", "quantity"}
    assert "occurred_at" in schema["required"]


def test_enum_definitions_are_resolvable(tmp_path: Path) -> None:
    export_json_schemas(tmp_path)
    schema = orjson.loads((tmp_path / "RequestRejected.v1.schema.json").read_bytes())
    ref = schema["properties"]["data"]["properties"]["reason"]["$ref"]
    name = ref.rsplit("/", 1)[-1]
    assert "sold_out" in schema["$defs"][name]["enum"]

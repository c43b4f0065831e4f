"""Request bodies of the HTTP API, validated with pydantic before anything is produced."""

from __future__ import annotations

import logging
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from eventpro.schemas import Id

__all__ = ("BodyError", "CreateEventBody", "TicketRequestBody", "parse_body")

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class BodyError(ValueError):
    """A request body that cannot be accepted; ``status`` is 400 (not JSON) or 422 (invalid)."""

    def __init__(self, status: int, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []

    def as_json(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": self.message, "details": self.details}


class CreateEventBody(BaseModel):
    """``POST /api/v1/events``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Name
    capacity: int = Field(ge=1, le=10_000_000)
    price_cents: int = Field(ge=0)
    max_per_user: int | None = Field(default=None, ge=1)
    event_id: Id | None = None


class TicketRequestBody(BaseModel):
    """``POST /api/v1/ticket-requests``; ``quantity``'s upper bound is checked by the view."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    user_id: Id
    quantity: int = Field(ge=1)
    request_id: Id | None = None


def parse_body(model: type[M], raw: bytes) -> M:
    """Parse and validate a JSON body.

    :raises BodyError: 400 for bytes that are not a JSON object, 422 naming each bad field.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BodyError(400, f"request body must be a JSON object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        details = [
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise BodyError(422, "invalid request body: " + "; ".join(details), details) from None

"""Senders of the saga agents, which wait for the broker before the input is acked.

:func:`send` produces an
:class:`~eventpro.agents.processing.Outgoing` envelope and :func:`send_raw` a
:class:`~eventpro.retry.RawOutgoing`; both wait until the broker acknowledged the record, so
an agent acks its input only after its output is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from eventpro.agents.channels import topic_for
from eventpro.agents.processing import Outgoing
from eventpro.retry import RawOutgoing
from eventpro.schemas import encode

__all__ = ("send", "send_raw")

logger = logging.getLogger(__name__)


async def send(records: Iterable[Outgoing]) -> None:
    """Produce envelopes and wait for the broker's acknowledgement of each."""
    for record in records:
        fut = await topic_for(record.topic).send(
            key=record.key.encode("utf-8") if record.key is not None else None,
            value=encode(record.envelope),
            partition=record.partition,
        )
        await fut


async def send_raw(records: Iterable[RawOutgoing]) -> None:
    """Produce raw records (retries, dead letters) and wait for their acknowledgement."""
    for record in records:
        fut = await topic_for(record.topic).send(
            key=record.key, value=record.value, headers=list(record.headers) or None
        )
        await fut

"""Payment side of the saga: the gateway interface, a simulated gateway and their settings.

The payments agent calls a :class:`PaymentGateway` (bounded by
:func:`eventpro.payments.gateway.with_timeout`); a real gateway plugs in behind the same
Protocol via :func:`eventpro.agents.payments.set_gateway`.
"""

from __future__ import annotations

from eventpro.payments.config import PaymentSettings, get_payment_settings
from eventpro.payments.gateway import (
    ChargeResult,
    ChargeStatus,
    GatewayOptions,
    PaymentError,
    PaymentGateway,
    PaymentTimeout,
    RefundResult,
    SimulatedGateway,
    TransientPaymentError,
)

__all__ = (
    "ChargeResult",
    "ChargeStatus",
    "GatewayOptions",
    "PaymentError",
    "PaymentGateway",
    "PaymentSettings",
    "PaymentTimeout",
    "RefundResult",
    "SimulatedGateway",
    "TransientPaymentError",
    "get_payment_settings",
)

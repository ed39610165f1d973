"""What every state change leaves behind: a line in the audit log, and a note in the shopper's
feed when it concerns them. Both are appended in the same transaction as the change."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from cadence.serving._config import ServingConf
from cadence.serving._scores import OnlineScores
from cadence.serving._tables import AuditLog, UserEvent


class ServiceError(Exception):
    """A request the service refuses: an HTTP status, a stable code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Context:
    """One request's view: its database session, who calls, the time, the rules."""

    session: Session
    actor: str  # the API key's id, or "system"
    now: dt.datetime
    conf: ServingConf
    scores: OnlineScores | None


def log(
    ctx: Context,
    action: str,
    *,
    user_id: str | None = None,
    offer_id: str | None = None,
    order_id: int | None = None,
    **detail: Any,
) -> None:
    ctx.session.add(
        AuditLog(
            at=ctx.now,
            actor=ctx.actor,
            action=action,
            user_id=user_id,
            offer_id=offer_id,
            order_id=order_id,
            detail=detail,
        )
    )


def notify(
    ctx: Context,
    user_id: str,
    kind: str,
    *,
    offer_id: str | None = None,
    order_id: int | None = None,
    reason: str | None = None,
) -> None:
    ctx.session.add(
        UserEvent(
            user_id=user_id,
            kind=kind,
            offer_id=offer_id,
            order_id=order_id,
            reason=reason,
            at=ctx.now,
        )
    )

"""What is waiting, for `/metrics`: pending webhook deliveries and ledger transactions not yet
sealed into the chain, read in one query."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

import ledger
from payments.gateway import Gateway
from payments.metrics import Backlog
from payments.webhooks.models import DeliveryJob

log = logging.getLogger(__name__)


def read_backlog(gw: Gateway) -> Backlog | None:
    """The backlogs now; None (and a warning) when the database does not answer."""
    pending = (
        select(func.count())
        .select_from(DeliveryJob)
        .where(DeliveryJob.status == "pending")
        .scalar_subquery()
    )
    unsealed = select(func.count()).select_from(ledger.Unsealed).scalar_subquery()
    try:
        with gw.db.read() as session:
            row = session.execute(select(pending, unsealed)).one()
    except SQLAlchemyError:
        log.warning("metrics: the database did not answer; backlogs left out")
        return None
    return Backlog(webhook_jobs_pending=int(row[0] or 0), ledger_unsealed=int(row[1] or 0))

"""Alembic environment: migrates the gateway's and the ledger's tables together."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from ledger.models import LedgerBase
from payments.finance import models as finance_models  # noqa: F401 - registers their tables
from payments.models import Base
from payments.webhooks import models as webhook_models  # noqa: F401 - registers their tables

target_metadata = [Base.metadata, LedgerBase.metadata]
url = context.config.get_main_option("sqlalchemy.url")
assert url is not None

if context.is_offline_mode():
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()

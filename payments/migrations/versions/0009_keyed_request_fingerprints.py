"""keyed request fingerprints: no idempotency row keeps a guessable hash or a secret

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 11:00:00.000000

Idempotency keys kept a plain SHA-256 of each request, card number and security code
included, which a backup reader could guess back; from now on the fingerprint is an HMAC
under a key derived from the gateway's secret key (`request_key` names it). Every fingerprint
made before is dropped (a repeat under such a key is taken as the same request, which replays
or takes over and never does the work twice; the rows expire within a day). Answers that
carried a webhook endpoint's signing secret lose their body: a repeat reissues the secret from
the endpoint, as the take-over does; one with no object to answer from is forgotten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_keys = sa.table(
    "idempotency_keys",
    sa.column("request_hash", sa.String),
    sa.column("response_body", sa.Text),
    sa.column("recovery_object", sa.String),
)
# Every signing secret the gateway issues starts so (payments/webhooks/signing.py).
_holds_secret = _keys.c.response_body.like("%whsec\\_%", escape="\\")


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_key", sa.String(length=16), nullable=True))
        batch_op.alter_column("request_hash", existing_type=sa.String(length=64), nullable=True)
    op.execute(_keys.update().values(request_hash=None))
    op.execute(_keys.delete().where(_holds_secret, _keys.c.recovery_object.is_(None)))
    op.execute(_keys.update().where(_holds_secret).values(response_body=None))


def downgrade() -> None:
    # The dropped fingerprints cannot come back: the rows they belonged to go with them.
    op.execute(_keys.delete().where(_keys.c.request_hash.is_(None)))
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.alter_column("request_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("request_key")

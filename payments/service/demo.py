"""Demo data: one agency per member state with a test key derived from the secret key, so
seeding again prints the same keys without storing them."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

from sqlalchemy import select

from payments import clock
from payments.gateway import Gateway
from payments.ids import new_id
from payments.models import Agency, ApiKey
from payments.service.access import digest


@dataclasses.dataclass(frozen=True)
class DemoAgency:
    id: str
    name: str
    name_ar: str
    state: str
    currency: str


DEMO_AGENCIES = (
    DemoAgency("sa-moj", "Ministry of Justice", "وزارة العدل", "SA", "SAR"),
    DemoAgency(
        "ae-icp",
        "Federal Authority for Identity and Citizenship",
        "الهيئة الاتحادية للهوية والجنسية",
        "AE",
        "AED",
    ),
    DemoAgency("kw-moi", "Ministry of Interior", "وزارة الداخلية", "KW", "KWD"),
    DemoAgency("qa-moph", "Ministry of Public Health", "وزارة الصحة العامة", "QA", "QAR"),
    DemoAgency(
        "bh-lmra", "Labour Market Regulatory Authority", "هيئة تنظيم سوق العمل", "BH", "BHD"
    ),
    DemoAgency("om-moh", "Ministry of Health", "وزارة الصحة", "OM", "OMR"),
)


def _demo_secret(gw: Gateway, purpose: str, prefix: str) -> str:
    mac = hmac.new(gw.settings.secret_key.encode(), f"demo:{purpose}".encode(), hashlib.sha256)
    return f"{prefix}{mac.hexdigest()[:40]}"


def demo_key(gw: Gateway, agency_id: str) -> str:
    """The test key `seed` issues the demo agency `agency_id`."""
    return _demo_secret(gw, agency_id, "gw_test_")


def seed(gw: Gateway) -> list[tuple[str, str]]:
    """Create what is missing and return (who, key) for every demo agency and finance."""
    if gw.settings.is_production:
        raise RuntimeError("demo data is never seeded in production")
    now = clock.now()
    keys: list[tuple[str, str]] = []
    with gw.db.transaction() as session:
        wanted: list[tuple[str | None, str, str, str]] = [
            (a.id, "agency", "test", demo_key(gw, a.id)) for a in DEMO_AGENCIES
        ]
        wanted.append((None, "finance", "live", _demo_secret(gw, "finance", "gw_fin_")))
        for agency in DEMO_AGENCIES:
            if session.get(Agency, agency.id) is None:
                session.add(
                    Agency(
                        id=agency.id,
                        name=agency.name,
                        name_ar=agency.name_ar,
                        state=agency.state,
                        currencies=[agency.currency],
                        created_at=now,
                    )
                )
        session.flush()
        for agency_id, role, mode, secret in wanted:
            key_digest = digest(secret)
            exists = session.execute(select(ApiKey.id).where(ApiKey.digest == key_digest)).first()
            if exists is None:
                session.add(
                    ApiKey(
                        id=new_id("key"),
                        agency_id=agency_id,
                        role=role,
                        mode=mode,
                        prefix=secret[:12],
                        digest=key_digest,
                        created_at=now,
                    )
                )
            keys.append((agency_id or "finance", secret))
    return keys

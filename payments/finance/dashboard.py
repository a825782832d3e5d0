"""The dashboard: the money at a glance."""

from __future__ import annotations

from werkzeug.wrappers import Response

from payments.finance import guard
from payments.finance.web import blp, render


@blp.get("/")
@guard.signed_in()
def dashboard() -> Response:
    return render("dashboard.html")

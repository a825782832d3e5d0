"""The console's blueprint: security headers on every answer, CSRF on every POST, pages drawn
in the signed-in user's language, and error pages in the console's own frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, current_app, g, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from payments.errors import Unavailable
from payments.finance import accounts, guard, protection
from payments.finance.texts import LANGUAGE_NAMES, Words

blp = Blueprint(
    "finance",
    __name__,
    url_prefix="/finance",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
blp.after_request(protection.headers)
blp.before_request(guard.check_post)

LANG_COOKIE = "finance_lang"
# The sections in the navigation bar: (endpoint, word, role that sees it).
SECTIONS = (
    ("finance.dashboard", "nav_dashboard", "finance"),
    ("finance.payments", "nav_payments", "finance"),
    ("finance.settlements", "nav_settlements", "finance"),
    ("finance.reconciliation", "nav_reconciliation", "finance"),
    ("finance.ledger", "nav_ledger", "finance"),
    ("finance.audit_log", "nav_audit", "finance"),
    ("finance.admin", "nav_admin", "admin"),
    ("finance.account", "nav_account", "finance"),
)  # the language of the pages before anyone signs in


def language() -> str:
    """The signed-in user's language; before sign-in, the one last chosen on this browser;
    Arabic by default."""
    found = g.get("console_user")
    if found is not None:
        return str(found.language)
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LANGUAGE_NAMES else "ar"


def render(
    template: str,
    page: Mapping[str, tuple[str, str]] | None = None,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    """A console page in the user's language, with the words of its view."""
    words = Words(language(), page)
    user = g.get("console_user")
    nav = [
        (url, word, _current(url))
        for endpoint, word, role in SECTIONS
        if user is not None
        and endpoint in current_app.view_functions
        and (role == "finance" or user.role == "admin")
        for url in (url_for(endpoint),)
    ]
    body = render_template(
        f"finance/{template}",
        w=words,
        lang=words.lang,
        dir=words.dir,
        user=user,
        nav=nav,
        csrf_token=protection.csrf_token,
        who=_who,
        **context,
    )
    return Response(body, status=status, mimetype="text/html")


def _current(url: str) -> bool:
    """Whether the page shown is the section at `url` or one of its pages (a payment is in
    Payments); the dashboard, at the console's root, only itself."""
    if url.rstrip("/") == blp.url_prefix:
        return request.path == url
    return request.path == url or request.path.startswith(url.rstrip("/") + "/")


def _who(actor: str | None) -> str:
    """A console user's e-mail address in place of their id (an API key's id, or the e-mail
    typed at a failed sign-in, stays as it is); looked up once per request."""
    if not actor:
        return "—"
    known: dict[str, str] = g.setdefault("console_emails", {})
    if actor not in known:
        found = accounts.emails_of(guard.gateway(), [actor])
        known[actor] = found.get(actor, actor)
    return known[actor]


@blp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    kind = status if status in (400, 403, 404) else 404
    return render("error.html", status=status, kind=kind)


@blp.errorhandler(Unavailable)
def _unavailable(_exc: Unavailable) -> Response:
    response = render("error.html", status=503, kind=503)
    response.headers["Retry-After"] = "1"
    return response

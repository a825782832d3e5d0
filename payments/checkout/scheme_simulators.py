"""The national schemes' simulated payment pages (KNET, BENEFIT, OmanNet), served by the
gateway only outside production under `/sandbox/{scheme}/`.

Each stands in for the scheme's own site: it takes the request exactly as the scheme would
(encrypted or signed by the gateway's adapter), shows `Approve`, `Decline` and `Cancel`, and
sends the payer back with the scheme's encrypted or signed result. Its server-to-server
address answers inquiries and refunds in the scheme's protocol. The simulators themselves
live beside their adapters in `providers/`; these are only their web pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from flask import Blueprint, Response, request, url_for

from payments.checkout import pages, security, texts
from providers.simulators import SchemeDesk, SimulatedPage

blp = Blueprint("scheme_simulators", __name__, template_folder="templates")
security.protect(blp)
pages.install_error_pages(blp)

# In production the simulators are absent: their addresses answer the plain 404 page.
absent_blp = Blueprint("scheme_simulators_absent", __name__)
security.protect(absent_blp)

CHOICES = ("approve", "decline", "cancel")
MAX_SERVER_BODY_BYTES = 64 * 1024


@absent_blp.route("/sandbox/<scheme>/<path:rest>", methods=["GET", "POST"])
def absent(scheme: str, rest: str) -> Response:
    return pages.error_page(404, "not_found")


def _desk(scheme: str) -> SchemeDesk:
    desk: SchemeDesk | None = pages.gateway().scheme_desks.get(scheme)
    if desk is None:
        raise pages.PageNotFound
    return desk


def _language(page_language: str) -> str:
    """The payer's choice, else the language the gateway asked the scheme for."""
    return texts.language(request.values.get("lang")) or texts.language(page_language) or "ar"


def _switch_url(scheme: str, query: Mapping[str, str], lang: str) -> str:
    """The same page in the other language (the scheme's request kept as it came)."""
    address = url_for("scheme_simulators.payment_page", scheme=scheme)
    return f"{address}?{urlencode({**query, 'lang': lang})}"


def _render(desk: SchemeDesk, page: SimulatedPage, lang: str, query: Mapping[str, str]) -> Response:
    name = texts.SCHEME_NAMES[lang][desk.scheme]
    amount, currency = texts.amount(lang, page.amount_minor, page.currency)
    other = "en" if lang == "ar" else "ar"
    return pages.render(
        "scheme_simulator.html",
        lang,
        switch_url=_switch_url(desk.scheme, query, other),
        scheme=desk.scheme,
        scheme_name=name,
        page=page,
        amount=amount,
        currency=currency,
        csrf=security.csrf_token(),
    )


@blp.get("/sandbox/<scheme>/pay")
def payment_page(scheme: str) -> Response:
    desk = _desk(scheme)
    query = {key: value for key, value in request.args.items() if key != "lang"}
    try:
        page = desk.simulator.open_page(query)
    except desk.refused:
        return pages.error_page(400, "bad_request")
    return _render(desk, page, _language(page.language), query)


@blp.post("/sandbox/<scheme>/pay/<page_id>")
def answer(scheme: str, page_id: str) -> Response:
    desk = _desk(scheme)
    if not security.csrf_ok():
        return pages.error_page(400, "csrf")
    choice = request.form.get("choice", "")
    if choice not in CHOICES:
        return pages.error_page(400, "bad_request")
    try:
        back = desk.simulator.answer(page_id[:100], choice)
    except desk.refused:
        return pages.error_page(400, "bad_request")
    return pages.see_other(back)


@blp.post("/sandbox/<scheme>/server")
def server(scheme: str) -> Response:
    """The scheme's server-to-server address: inquiries and refunds, in its own protocol."""
    desk = _desk(scheme)
    body = request.get_data(cache=False)[: MAX_SERVER_BODY_BYTES + 1]
    if len(body) > MAX_SERVER_BODY_BYTES:
        return Response("request too large", status=413, mimetype="text/plain")
    reply = desk.serve(body, dict(request.headers))
    return Response(reply.body, status=reply.status, content_type=reply.content_type or None)

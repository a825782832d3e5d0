"""The sandbox acquirer's 3-D Secure challenge page: a simulator of the cardholder's bank,
served by the gateway only outside production, where the payer completes or fails the check.

It stands in for a page on the bank's own site, so it only records the payer's choice in
the sandbox and sends the payer back; the gateway then asks the sandbox how the charge ended.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request, url_for

from payments.checkout import pages, security, texts
from providers.sandbox import Challenge, SandboxProvider

blp = Blueprint("simulator", __name__, template_folder="templates")
security.protect(blp)
pages.install_error_pages(blp)

# In production the simulator is absent: its addresses answer the plain 404 page.
absent_blp = Blueprint("simulator_absent", __name__)
security.protect(absent_blp)


@absent_blp.route("/sandbox/3ds/<path:rest>", methods=["GET", "POST"])
def absent(rest: str) -> Response:
    return pages.error_page(404, "not_found")


def _language() -> str:
    """As a bank's page does: the payer's choice, else the browser's preferred language."""
    chosen = texts.language(request.values.get("lang"))
    return chosen or request.accept_languages.best_match(texts.LANGUAGES, default="ar") or "ar"


def _challenge(reference: str) -> tuple[SandboxProvider, Challenge]:
    for name in pages.gateway().providers.names():
        provider = pages.gateway().providers.get(name)
        if isinstance(provider, SandboxProvider):
            found = provider.challenge(reference[:100])
            if found is not None:
                return provider, found
    raise pages.PageNotFound


@blp.get("/sandbox/3ds/<reference>")
def challenge(reference: str) -> Response:
    _, found = _challenge(reference)
    lang = _language()
    amount, currency = texts.amount(lang, found.amount_minor, found.currency)
    other = "en" if lang == "ar" else "ar"
    return pages.render(
        "simulator.html",
        lang,
        switch_url=url_for("simulator.challenge", reference=reference, lang=other),
        challenge=found,
        amount=amount,
        currency=currency,
        state_text=texts.text(lang, f"sim_state_{found.state}"),
        back_url=found.return_url,
        csrf=security.csrf_token(),
        masthead=texts.text(lang, "sim_masthead"),
    )


@blp.post("/sandbox/3ds/<reference>")
def answer(reference: str) -> Response:
    provider, found = _challenge(reference)
    lang = texts.language(request.form.get("lang"))
    query: dict[str, Any] = {"lang": lang} if lang else {}
    page = url_for("simulator.challenge", reference=reference, **query)
    if not security.csrf_ok():
        return pages.error_page(400, "csrf", page)
    outcome = request.form.get("outcome")
    if outcome not in ("complete", "fail"):
        return pages.error_page(400, "bad_request", page)
    back = provider.complete_challenge(found.reference, succeeded=outcome == "complete")
    # Already answered (another tab, a double click): the page says how it ended.
    return pages.see_other(back or page)

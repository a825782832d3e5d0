"""The hosted payment page at `/pay/<token>`: thin views over the checkout service.

The token is the payer's only credential and names one payment. Every POST carries a CSRF
token and answers with a 303 (Post/Redirect/Get), except a form with mistakes, which is shown
again at once with what the payer typed, less the card number and the security code.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from payments import clock
from payments.checkout import forms, security, texts
from payments.errors import Conflict, GatewayError, ValidationFailed
from payments.gateway import Gateway
from payments.links import read_token
from payments.service import checkout
from payments.service.checkout import CallbackRefused, CheckoutView, TryResult

log = logging.getLogger(__name__)

blp = Blueprint(
    "checkout",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/pay/static",
)
security.protect(blp)

REFRESH_S = 10  # how often the page of a payment in flight checks again
FINISHED_STATES = {"succeeded", "authorised", "failed", "cancelled", "expired", "link_expired"}
# The hint each field's description points at; the month and year share the date's.
HINT_IDS = {"number": "number-hint", "exp_month": "expiry-hint", "exp_year": "expiry-hint"}
HINT_IDS |= {"cvc": "cvc-hint"}


class PageNotFound(Exception):
    """The token is forged, altered or names no payment: a plain 404 page."""


@dataclasses.dataclass(frozen=True)
class FieldView:
    """One card field as the template draws it."""

    value: str
    error: str | None
    describedby: str
    invalid: bool


def gateway() -> Gateway:
    gw: Gateway = current_app.extensions["gateway"]
    return gw


def _payment_id(token: str) -> str:
    settings = gateway().settings
    payment_id = read_token(settings.secret_key, token, settings.previous_secret_key)
    if payment_id is None:
        raise PageNotFound
    return payment_id


def _view(payment_id: str) -> CheckoutView:
    try:
        return checkout.view(gateway(), payment_id)
    except GatewayError as exc:
        if exc.status == 404:
            raise PageNotFound from None
        raise


def page_url(token: str, lang: str | None, **params: str) -> str:
    query: dict[str, Any] = {"lang": lang, **params} if lang else dict(params)
    return url_for("checkout.page", token=token, **query)


def with_language(url: str, lang: str | None) -> str:
    """`url` with `lang=` added when it is one of the gateway's own pages, which understand it
    (the sandbox's challenge page, the return address); other sites' addresses stay as given."""
    own = gateway().settings.public_url + "/"
    if lang is None or not url.startswith(own) or "?" in url:
        return url
    return f"{url}?{urlencode({'lang': lang})}"


def see_other(url: str) -> Response:
    response = Response(status=303)
    response.headers["Location"] = url
    return response


# --------------------------------------------------------------------------- rendering


def render(
    template: str,
    lang: str,
    *,
    status: int = 200,
    switch_url: str | None = None,
    **context: Any,
) -> Response:
    """A page in `lang`, with the words of `texts` and a link to the other language."""
    other = "en" if lang == "ar" else "ar"

    def t(key: str, **values: object) -> str:
        return texts.text(lang, key, **values)

    body = render_template(
        f"checkout/{template}",
        lang=lang,
        dir=texts.DIRECTIONS[lang],
        t=t,
        other_lang=other,
        other_lang_name=texts.LANGUAGE_NAMES[other],
        switch_url=switch_url,
        **context,
    )
    return Response(body, status=status, mimetype="text/html")


def error_page(status: int, kind: str, back_url: str | None = None) -> Response:
    """A plain page in both languages: the payment's language may not be known here."""
    body = render_template(
        "checkout/error.html",
        kind=kind,
        back_url=back_url,
        ar=lambda key: texts.text("ar", key),
        en=lambda key: texts.text("en", key),
    )
    response = Response(body, status=status, mimetype="text/html")
    if status == 503:  # the database is away: the browser may try again shortly
        response.headers["Retry-After"] = "1"
    return response


def _state(view: CheckoutView) -> str:
    if view.link_expired and view.status not in ("created", "expired", "processing"):
        return "link_expired"  # a payer still waiting on an outcome keeps the page
    if view.status == "created":
        if view.expired:
            return "expired"
        return "form" if view.methods else "unavailable"
    if view.status == "requires_capture":
        return "authorised"
    return view.status  # processing | succeeded | failed | cancelled | expired


def _field_views(lang: str, values: dict[str, str], errors: dict[str, str]) -> dict[str, FieldView]:
    views = {}
    for name in forms.FIELDS:
        ids = [HINT_IDS[name]] if name in HINT_IDS else []
        error = None
        if name in errors:
            error = texts.field_error(lang, name, errors[name])
            ids.append(f"{name}-error")
        in_expiry = name in ("exp_month", "exp_year") and "expiry" in errors
        if in_expiry:
            ids.append("expiry-error")
        views[name] = FieldView(
            # Never the card number or the security code, whatever was typed.
            value=values.get(name, "") if name in forms.KEPT_FIELDS else "",
            error=error,
            describedby=" ".join(ids),
            invalid=error is not None or in_expiry,
        )
    return views


def _page(
    token: str,
    view: CheckoutView,
    lang: str,
    *,
    form: forms.CardForm | None = None,
    refresh: bool = True,
) -> Response:
    state = _state(view)
    agency = (view.agency_name_ar or view.agency_name) if lang == "ar" else view.agency_name
    errors = form.errors if form is not None else {}
    summary = [
        ("#exp_month" if field == "expiry" else f"#{field}", texts.field_error(lang, field, code))
        for field, code in errors.items()
    ]
    amount, currency = texts.amount(lang, view.amount_minor, view.currency)
    decline = None
    if state == "form" and view.last_decline is not None:
        decline = (
            texts.failure_reason(lang, view.last_decline),
            texts.tries_left(lang, view.tries_left),
        )
    redirect_url = with_language(view.redirect_url, lang) if view.redirect_url else None
    return render(
        "page.html",
        lang,
        switch_url=page_url(token, "en" if lang == "ar" else "ar"),
        token=token,
        state=state,
        finished=state in FINISHED_STATES,
        view=view,
        agency=agency,
        amount=amount,
        currency=currency,
        fields=_field_views(lang, form.values if form else {}, errors),
        errors=errors,
        expiry_error=texts.field_error(lang, "expiry", errors["expiry"])
        if "expiry" in errors
        else None,
        error_summary=summary,
        decline=decline,
        failure=texts.failure_reason(lang, view.failure_code),
        refresh_s=REFRESH_S if state == "processing" and refresh else None,
        stop_refresh_url=page_url(token, lang, refresh="off"),
        check_url=page_url(token, lang, **({} if refresh else {"refresh": "off"})),
        continue_url=redirect_url,
        csrf=security.csrf_token(),
        test_mode=not view.livemode,
        schemes=[(m, texts.SCHEME_NAMES[lang][m]) for m in view.methods if m in checkout.SCHEMES],
        card_form=any(m in checkout.CARD_METHODS for m in view.methods),
    )


def _after_try(token: str, result: TryResult, lang: str | None) -> Response:
    log.info("checkout try", extra={"payment": result.view.payment_id, "outcome": result.kind})
    if result.kind == checkout.FINISHED:
        return see_other(result.view.return_url)
    if result.kind == checkout.REDIRECT and result.redirect_url:
        return see_other(with_language(result.redirect_url, lang))
    return see_other(page_url(token, lang))  # declined (shown on the page) or processing


# --------------------------------------------------------------------------- views


@blp.get("/pay/<token>")
def page(token: str) -> Response:
    view = _view(_payment_id(token))
    lang = texts.language(request.args.get("lang")) or view.language
    return _page(token, view, lang, refresh=request.args.get("refresh") != "off")


@blp.post("/pay/<token>/card")
def card(token: str) -> Response:
    payment_id = _payment_id(token)
    view = _view(payment_id)
    lang = texts.language(request.form.get("lang"))
    if not security.csrf_ok():
        return error_page(400, "csrf", page_url(token, lang))
    form = forms.read(request.form, clock.now().date())
    if form.card is None:
        return _page(token, view, lang or view.language, form=form)
    return_to = with_language(f"{gateway().settings.public_url}/pay/{token}/return", lang)
    try:
        result = checkout.pay_with_card(gateway(), payment_id, form.card, return_to=return_to)
    except ValidationFailed as exc:
        # The service checks the card too; show its word beside the field it names.
        field = forms.field_of(exc.param)
        problem = {"exp_month": ("expiry", "past"), "exp_year": ("expiry", "past")}.get(
            field or "", ("number", "invalid")
        )
        failed = dataclasses.replace(form, errors=dict([problem]), card=None)
        return _page(token, _view(payment_id), lang or view.language, form=failed)
    except Conflict:
        return see_other(page_url(token, lang))  # paid, cancelled or expired meanwhile
    return _after_try(token, result, lang)


@blp.post("/pay/<token>/scheme/<method>")
def scheme(token: str, method: str) -> Response:
    """The payer chose a national scheme: off to the scheme's own page."""
    payment_id = _payment_id(token)
    view = _view(payment_id)
    lang = texts.language(request.form.get("lang"))
    if not security.csrf_ok():
        return error_page(400, "csrf", page_url(token, lang))
    # The scheme sends the payer back here with its encrypted or signed result.
    return_to = f"{gateway().settings.public_url}/pay/{token}/return"
    try:
        result = checkout.pay_with_scheme(
            gateway(),
            payment_id,
            method,
            return_to=return_to,
            language=lang or view.language,
        )
    except Conflict:
        return see_other(page_url(token, lang))  # paid, cancelled or expired meanwhile
    return _after_try(token, result, lang)


@blp.route("/pay/<token>/return", methods=["GET", "POST"])
def back_from_acquirer(token: str) -> Response:
    """The acquirer's page sends the payer here. What it brings is never read as an outcome:
    a national scheme's callback must verify and name one of this payment's attempts, and then
    only prompts the gateway to ask the scheme itself."""
    payment_id = _payment_id(token)
    lang = texts.language(request.args.get("lang"))
    fields = {key: value for key, value in request.values.items() if key != "lang"}
    try:
        if any(len(values) > 1 for values in request.values.listvalues()):
            # A field sent twice could be read two ways: no scheme sends one.
            raise CallbackRefused("the callback repeats a field")
        result = checkout.return_from_acquirer(gateway(), payment_id, fields)
    except CallbackRefused as exc:
        log.warning("scheme callback refused", extra={"payment": payment_id, "why": str(exc)})
        return error_page(400, "callback", page_url(token, lang))
    except Conflict:
        return see_other(page_url(token, lang))
    return _after_try(token, result, lang)


@blp.post("/pay/<token>/cancel")
def cancel(token: str) -> Response:
    payment_id = _payment_id(token)
    _view(payment_id)
    lang = texts.language(request.form.get("lang"))
    if not security.csrf_ok():
        return error_page(400, "csrf", page_url(token, lang))
    try:
        view = checkout.cancel(gateway(), payment_id)
    except Conflict:
        return see_other(page_url(token, lang))
    log.info("checkout cancelled", extra={"payment": payment_id})
    return see_other(view.return_url)


@blp.get("/pay/<token>/card")
@blp.get("/pay/<token>/cancel")
def form_address(token: str) -> Response:
    """A form's address opened directly (a bookmark, a reload): back to the page."""
    _payment_id(token)
    return see_other(page_url(token, texts.language(request.args.get("lang"))))


# --------------------------------------------------------------------------- errors


def install_error_pages(blueprint: Blueprint) -> None:
    """HTML pages, not the API's JSON, for whatever goes wrong in `blueprint`'s views."""

    @blueprint.errorhandler(PageNotFound)
    def _not_found(exc: PageNotFound) -> Response:
        return error_page(404, "not_found")

    @blueprint.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:
            return error_page(404, "not_found")
        return error_page(status, "bad_request" if status < 500 else "server_error")

    @blueprint.errorhandler(GatewayError)
    def _gateway(exc: GatewayError) -> Response:
        if exc.status == 404:
            return error_page(404, "not_found")
        if exc.status < 500:
            return error_page(exc.status, "bad_request")
        log.warning("checkout page failed", extra={"code": exc.code, "status": exc.status})
        return error_page(exc.status, "server_error")

    @blueprint.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on a checkout page")
        return error_page(500, "server_error")


install_error_pages(blp)

"""Bad query strings on the list endpoints (API.md section 2, Lists, and section 3 filters):
each answers 422 naming the parameter; the limits themselves are accepted."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.integration.test_bad_input import body_of, call, expect_error, make_objects

LIST_PATHS = ["/v1/payments", "/v1/events", "/v1/payments/{succeeded}/refunds"]
BAD_PAGING: list[tuple[str, str]] = [
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=-1", "limit"),
    ("limit=x", "limit"),
    ("limit=", "limit"),
    ("limit=1.5", "limit"),
    ("limit=10.0", "limit"),
    ("limit=1e2", "limit"),
    ("limit=99999999999999999999999", "limit"),
    ("limit=" + "9" * 5000, "limit"),
    ("starting_after=" + "x" * 41, "starting_after"),
    ("starting_after=", "starting_after"),
]


@pytest.mark.parametrize(("query", "param"), BAD_PAGING, ids=[q[:30] for q, _ in BAD_PAGING])
def test_bad_paging_is_422_on_every_list(
    client: FlaskClient, agency_key: str, query: str, param: str
) -> None:
    objects = make_objects(client, agency_key)
    for template in LIST_PATHS:
        response = call(client, "GET", objects.path(template), agency_key, query=query)
        expect_error(response, 422, "invalid_request", param=param, fields={param})


@pytest.mark.parametrize("limit", ["1", "100", "20"])
def test_the_paging_limits_themselves_are_accepted(
    client: FlaskClient, agency_key: str, limit: str
) -> None:
    objects = make_objects(client, agency_key)
    for template in LIST_PATHS:
        response = call(client, "GET", objects.path(template), agency_key, query={"limit": limit})
        assert response.status_code == 200, response.get_data(as_text=True)
        listed = body_of(response)
        assert listed["object"] == "list"
        assert 1 <= len(listed["data"]) <= int(limit)


def test_limit_one_pages_through_everything(client: FlaskClient, agency_key: str) -> None:
    """The control for `limit`: a page of one says there is more."""
    make_objects(client, agency_key)
    page = body_of(call(client, "GET", "/v1/payments", agency_key, query={"limit": "1"}))
    assert len(page["data"]) == 1 and page["has_more"] is True


BAD_PAYMENT_FILTERS: list[tuple[str, str]] = [
    ("status=paid", "status"),
    ("status=SUCCEEDED", "status"),
    ("status=", "status"),
    ("status=succeeded,failed", "status"),
    ("reference=" + "r" * 256, "reference"),
    ("reference=", "reference"),
    ("service_code=moh%20certificate", "service_code"),
    ("service_code=" + "s" * 65, "service_code"),
    ("created_gte=yesterday", "created_gte"),
    ("created_gte=2026-01-01", "created_gte"),
    ("created_gte=2026-01-01T00:00:00", "created_gte"),
    ("created_gte=2026-13-01T00:00:00Z", "created_gte"),
    ("created_gte=2026-02-30T00:00:00Z", "created_gte"),
    ("created_gte=1767225600", "created_gte"),
    ("created_gte=" + "2026-01-01T00:00:00Z" * 3, "created_gte"),
    ("created_gte=0001-01-01T00:00:00%2B14:00", "created_gte"),
    ("created_lt=9999-12-31T23:59:59-14:00", "created_lt"),
    ("created_lt=2026-01-01T00:00:00", "created_lt"),
    ("created_lt=soon", "created_lt"),
    ("created_gte=2026-06-01T00:00:00Z&created_lt=2026-01-01T00:00:00Z", "created_lt"),
    ("created_gte=2026-06-01T00:00:00Z&created_lt=2026-06-01T00:00:00Z", "created_lt"),
]


@pytest.mark.parametrize(
    ("query", "param"), BAD_PAYMENT_FILTERS, ids=[q[:40] for q, _ in BAD_PAYMENT_FILTERS]
)
def test_a_bad_payment_filter_is_422(
    client: FlaskClient, agency_key: str, query: str, param: str
) -> None:
    response = call(client, "GET", "/v1/payments", agency_key, query=query)
    expect_error(response, 422, "invalid_request", param=param, fields={param})


def test_every_bad_filter_is_mapped_and_the_first_is_named(
    client: FlaskClient, agency_key: str
) -> None:
    response = call(
        client,
        "GET",
        "/v1/payments",
        agency_key,
        query="limit=0&status=paid&created_gte=yesterday",
    )
    expect_error(
        response,
        422,
        "invalid_request",
        param="limit",
        fields={"limit", "status", "created_gte"},
    )


@pytest.mark.parametrize(
    "query",
    [
        "status=succeeded",
        "status=requires_capture",
        "reference=MOH-2026-000123",
        "service_code=moh.certificate",
        "created_gte=2020-01-01T00:00:00Z",
        "created_gte=2020-01-01T04:00:00%2B04:00",
        "created_lt=2100-01-01T00:00:00.000Z",
        "created_gte=2020-01-01T00:00:00Z&created_lt=2100-01-01T00:00:00Z",
        "colour=blue",  # unknown query parameters are ignored, as at Stripe
    ],
)
def test_good_payment_filters_are_accepted(
    client: FlaskClient, agency_key: str, query: str
) -> None:
    make_objects(client, agency_key)
    response = call(client, "GET", "/v1/payments", agency_key, query=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert body_of(response)["object"] == "list"


@pytest.mark.parametrize(
    "query", ["type=payment.paid", "type=payment.*", "type=", "type=PAYMENT.SUCCEEDED"]
)
def test_a_bad_event_type_filter_is_422(client: FlaskClient, agency_key: str, query: str) -> None:
    response = call(client, "GET", "/v1/events", agency_key, query=query)
    expect_error(response, 422, "invalid_request", param="type", fields={"type"})


def test_a_good_event_type_filter_is_accepted(client: FlaskClient, agency_key: str) -> None:
    make_objects(client, agency_key)
    response = call(client, "GET", "/v1/events", agency_key, query="type=payment.failed")
    assert response.status_code == 200
    assert {e["type"] for e in body_of(response)["data"]} == {"payment.failed"}


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/payments", "starting_after=pay_%00"),
        ("/v1/payments", "reference=MOH%00"),
        ("/v1/events", "starting_after=evt_%00"),
        ("/v1/payments/{succeeded}/refunds", "starting_after=re_%00"),
    ],
)
def test_a_nul_in_a_query_parameter_is_not_a_crash(
    client: FlaskClient, agency_key: str, path: str, query: str
) -> None:
    """No object can hold a NUL, so the answer is an empty list or a 422 naming the
    parameter, the same on both databases."""
    objects = make_objects(client, agency_key)
    response = call(client, "GET", objects.path(path), agency_key, query=query)
    if response.status_code == 200:
        assert body_of(response)["data"] == []
    else:
        param = query.split("=", maxsplit=1)[0]
        expect_error(response, 422, "invalid_request", param=param, fields={param})


def test_a_nul_in_a_ledger_account_code_is_not_found(client: FlaskClient, finance_key: str) -> None:
    """No account can have such a code: 404 on both databases, not a driver error."""
    response = call(
        client, "GET", "/v1/ledger/accounts/cash%00/statement", finance_key, query="currency=OMR"
    )
    expect_error(response, 404, "not_found", param="code")

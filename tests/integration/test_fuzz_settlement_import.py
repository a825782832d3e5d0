"""Fuzz test of `POST /v1/settlements`: a malformed file answers 422, naming its bad line, and
writes nothing."""

from __future__ import annotations

import io
import re

from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st

from payments.gateway import Gateway
from payments.settlement.sandbox_file import HEADER
from tests.conftest import auth, count_rows
from tests.unit.fuzz_support import fuzz
from tests.unit.test_fuzz_settlement_files import corrupted_files, headless_files

# A good file with one bad line (refused at that line), or bytes that do not even start with
# the header (refused at line 1).
bad_files = st.one_of(
    corrupted_files(),
    headless_files.map(lambda data: (data, 1)),
)


@fuzz(25, suppress=[HealthCheck.function_scoped_fixture])
@given(file=bad_files)
@example(file=(b"", 1))
@example(file=(HEADER.encode() + b"\n2026-11-03,r,payment,OMR,1.0000,0.000,1.000\n", 2))
def test_a_malformed_upload_is_refused_and_writes_nothing(
    gw: Gateway, client: FlaskClient, finance_key: str, file: tuple[bytes, int]
) -> None:
    content, line_no = file
    before = count_rows(gw)
    response = client.post(
        "/v1/settlements",
        data={"provider": "sandbox", "file": (io.BytesIO(content), "fuzz.csv")},
        headers=auth(finance_key),
        content_type="multipart/form-data",
    )
    assert response.status_code == 422, response.json
    assert response.json is not None
    error = response.json["error"]
    assert error["code"] == "settlement_file_invalid" and error["param"] == "file"
    assert re.search(rf"\bline {line_no}: \S", error["message"]), error["message"]
    assert count_rows(gw) == before

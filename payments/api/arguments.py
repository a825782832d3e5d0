"""The views' arguments parser: a JSON body is the one payments.api.http already read and
checked (size, media type, UTF-8, nesting, characters), not parsed a second time."""

from __future__ import annotations

from typing import Any

from flask import g
from marshmallow import Schema
from webargs.flaskparser import FlaskParser


class BodyParser(FlaskParser):
    """webargs' Flask parser whose `json` location is the body the request hooks parsed
    (`g.body`, set on every API POST; an empty body is `{}`)."""

    def load_json(self, req: Any, schema: Schema) -> Any:
        if "body" in g:
            return g.body
        return super().load_json(req, schema)

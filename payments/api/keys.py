"""Views whose work claims its Idempotency-Key inside its own transactions: the key's row is
written with the work's first change and finished with its answer in the last, and a request
that stops before its claim learns from the key what to answer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response, current_app
from marshmallow import Schema

from payments import idempotency
from payments.api.context import gateway
from payments.errors import GatewayError

View = Callable[..., Any]
CLAIMS_IN_WORK = "claims_key_in_work"  # the attribute that marks such a view


def replayed(replay: idempotency.Replay) -> Response:
    """The first request's kept answer, sent again."""
    response = Response(replay.body, status=replay.status, mimetype="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response


def claims_in_work(view: View | None) -> bool:
    return bool(getattr(view, CLAIMS_IN_WORK, False))


def _render(status: int, schema: Schema, obj: Any) -> Response:
    """The answer as the view's response schema makes it (as flask-smorest's `response` does)."""
    response: Response = current_app.json.response(schema.dump(obj))  # type: ignore[assignment]
    response.status_code = status
    return response


def claimed_in_work(status: int, schema: Schema) -> Callable[[View], View]:
    """Mark a view whose service claims the request's key in its own transactions
    (`idempotency.committed` and `answered`) and answers `status` with `schema`: below the
    view's `response` decorator, naming the same answer."""

    def decorator(view: View) -> View:
        render = functools.partial(_render, status, schema)

        @functools.wraps(view)
        def keyed(*args: Any, **kwargs: Any) -> Any:
            holding = idempotency.holding()
            asked = holding.asked if holding is not None else None
            if holding is None or asked is None:
                return view(*args, **kwargs)
            with idempotency.rendering(render):
                try:
                    result = view(*args, **kwargs)
                except (idempotency.KeyTaken, GatewayError) as stopped:
                    if holding.claim is not None and not isinstance(stopped, idempotency.KeyTaken):
                        raise  # the request holds the key: its answer is its own
                    outcome = idempotency.begin(
                        gateway(), asked.api_key_id, asked.key, asked.request
                    )
                    if isinstance(outcome, idempotency.Replay):
                        return replayed(outcome)
                    holding.claim = outcome
                    if outcome.recovered is None and isinstance(stopped, GatewayError):
                        raise  # nothing under the key before: this answer is the first
                    result = view(*args, **kwargs)  # again, holding the key
            kept = idempotency.answer_kept_for(result)
            return result if kept is None else kept

        setattr(keyed, CLAIMS_IN_WORK, True)
        return keyed

    return decorator

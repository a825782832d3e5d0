"""Where acquirers send their notifications (`/providers/<name>/notifications`); outside the
agency API, authenticated by the acquirer's own signature."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from payments.api.context import gateway
from payments.errors import PayloadTooLarge
from payments.service import notifications

blp = Blueprint("notifications", __name__, url_prefix="/providers")


@blp.route("/<string:provider>/notifications", methods=["POST"])
def receive(provider: str) -> Response:
    """Verify and store one notification, then check the charge it names with the acquirer."""
    raw = request.get_data(cache=False)
    if len(raw) > gateway().settings.max_body_bytes:
        raise PayloadTooLarge("the request body is over 64 KiB")
    headers = {name.lower(): value for name, value in request.headers.items()}
    receipt = notifications.receive(gateway(), provider, raw, headers)
    return jsonify({"received": True, "event": receipt.event_id, "duplicate": receipt.duplicate})

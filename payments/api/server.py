"""Gunicorn, configured in code, serving the app factory."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from config import Settings
from payments.api.app import create_app


class GatewayServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, bind: str, workers: int) -> None:
        self.settings = settings
        self.options = {
            "bind": bind,
            "workers": workers,
            "accesslog": "-",
            "timeout": 60,
            "graceful_timeout": 20,
            "limit_request_line": 8190,
            "control_socket_disable": True,  # one per host otherwise, shared by every server
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app(self.settings)

    def init(self, parser: Any, opts: Any, args: Any) -> None:
        return None

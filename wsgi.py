"""The WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import os

from payments.api.app import create_app
from payments.api.server import behind_proxies

app = behind_proxies(create_app(), os.environ)

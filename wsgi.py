"""The WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

from payments.api.app import create_app

app = create_app()

"""gunicorn's settings for production: `gunicorn -c gunicorn.conf.py wsgi:app`.

They are `payments.api.server.server_options`, the very ones `gateway serve` uses: workers
from GATEWAY_WORKERS (else two per core, and one), timeouts, keep-alive, request limits,
X-Forwarded-Proto believed only from GATEWAY_TRUSTED_PROXIES, JSON logs, and the hooks that
check the settings at start and keep the Prometheus metrics of every worker. `-b ADDRESS` on
the command line overrides the default bind (127.0.0.1:$PORT).
"""

import os

from payments.api.server import server_options

globals().update(server_options(os.environ))

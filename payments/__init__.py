"""The gateway: API, payment model and services, routing, outbox, worker and CLI."""

"""Signed webhook delivery: endpoints, Standard Webhooks signatures, the private-network guard,
and the worker that delivers each event to each subscribed endpoint at least once."""

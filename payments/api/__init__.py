"""The HTTP side of the gateway: app factory, request hooks, error mapping and blueprints."""

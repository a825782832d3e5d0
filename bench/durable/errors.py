"""The durable yardstick's error: a recording that cannot replay."""


class RecordingError(Exception):
    """The gateway's statements cannot be replayed as recorded."""

"""Durable yardstick: a bare Flask + DB-API app replaying the gateway's recorded statements."""

from bench.durable.compiler import Compiler, Context, template
from bench.durable.errors import RecordingError
from bench.durable.link import linked
from bench.durable.record import Summary, prepare, record
from bench.durable.recorder import Ran, Recorded, Transaction
from bench.durable.replay import Replay
from bench.durable.serve import connect
from bench.durable.tags import Returned, decode, encode

__all__ = [
    "Compiler",
    "Context",
    "Ran",
    "Recorded",
    "RecordingError",
    "Replay",
    "Returned",
    "Summary",
    "Transaction",
    "connect",
    "decode",
    "encode",
    "linked",
    "prepare",
    "record",
    "template",
]

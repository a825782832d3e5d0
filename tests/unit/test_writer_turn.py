"""SQLite's writers take turns on a lock file: across processes and threads, promptly, and
giving up as an outage after the busy timeout."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from payments.errors import Unavailable
from payments.writer_turn import WriterTurn


def _hold(database: Path, taken: multiprocessing.synchronize.Event, hold_s: float) -> None:
    with WriterTurn(database, 5.0)():
        taken.set()
        time.sleep(hold_s)


def test_a_writer_in_another_process_is_waited_for_and_followed_at_once(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    turn = WriterTurn(database, 5.0)
    with turn():  # opened before the fork, as a gunicorn master might have
        pass
    context = multiprocessing.get_context("fork")
    taken = context.Event()
    other = context.Process(target=_hold, args=(database, taken, 0.3))
    other.start()
    assert taken.wait(5)
    started = time.monotonic()
    with turn():
        waited = time.monotonic() - started
    other.join(5)
    assert 0.15 < waited < 0.3 + 0.1, waited


def test_threads_take_turns_and_a_turn_not_given_in_time_is_an_outage(tmp_path: Path) -> None:
    turn = WriterTurn(tmp_path / "gateway.db", 0.2)
    inside = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with turn():
            inside.set()
            leave.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(5)
    with pytest.raises(Unavailable), turn():
        pass
    leave.set()
    holder.join(5)
    with turn():  # free again
        pass


def test_a_process_holding_the_lock_file_makes_others_wait_until_the_timeout(
    tmp_path: Path,
) -> None:
    database = tmp_path / "gateway.db"
    context = multiprocessing.get_context("fork")
    taken = context.Event()
    other = context.Process(target=_hold, args=(database, taken, 1.0))
    other.start()
    assert taken.wait(5)
    with pytest.raises(Unavailable), WriterTurn(database, 0.2)():
        pass
    other.join(5)

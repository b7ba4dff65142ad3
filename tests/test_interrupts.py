"""umed_common.interrupts with cli_entry: a signal both interrupts the main thread and asks worker
threads to stop; handlers and the flag are put back when the command returns."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from umed_common.errors import EXIT_SIGINT, cli_entry, sigterm_raises
from umed_common.interrupts import Stopped, check_stop, stop_requested


def test_ctrl_c_stops_a_worker_thread_and_the_command_exits_130():
    seen = {}

    @cli_entry
    def command():
        started, done = threading.Event(), threading.Event()

        def worker():
            started.set()
            try:
                while True:
                    check_stop()
                    done.wait(0.01)
            except Stopped:
                seen["worker"] = "stopped"

        thread = threading.Thread(target=worker)
        thread.start()
        started.wait()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            done.wait(10.0)  # interrupted by KeyboardInterrupt long before
        finally:
            thread.join(10.0)
        return 0

    assert command() == EXIT_SIGINT and seen == {"worker": "stopped"}
    assert not stop_requested()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_embedding_programs_own_handler_is_left_alone():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda *args: calls.append(args[0]))
    try:
        with sigterm_raises():
            os.kill(os.getpid(), signal.SIGINT)
            threading.Event().wait(0.05)
            assert not stop_requested()
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_check_stop_serves_as_a_progress_callback():
    check_stop(0.5)  # no stop asked: nothing happens
    with pytest.raises(KeyboardInterrupt), sigterm_raises():
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(5.0)
    assert not stop_requested()

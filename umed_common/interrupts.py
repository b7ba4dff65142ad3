"""Prompt interruption of work running on other threads.

Ctrl-C (SIGINT) and SIGTERM interrupt only the main thread (KeyboardInterrupt / Terminated,
see umed_common.errors.cli_entry); a case projected on a worker thread would run to its end
while the main thread waits for it in a `finally`. So the signal handler also sets a
process-wide stop flag, and long work polls it between chunks (views, slices, blocks) with
`check_stop`, which raises `Stopped`: a BaseException, so the `except Exception` / `except
UserError` of a batch does not record it as a failed case, while `finally` and `with` blocks
(staging folders) still clean up. The flag is cleared when the command returns.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, wait

_STOP = threading.Event()


class Stopped(BaseException):
    """Work abandoned on a worker thread because the run is being interrupted."""


def request_stop() -> None:
    _STOP.set()


def clear_stop() -> None:
    _STOP.clear()


def stop_requested() -> bool:
    return _STOP.is_set()


def check_stop(*_progress) -> None:
    """Raise Stopped once a stop was requested; takes (and ignores) a progress fraction, so it
    also serves as a projector's `progress` callback."""
    if _STOP.is_set():
        raise Stopped()


def wait_heeding_signals(future: Future, poll_s: float = 0.1):
    """future.result(), waking every `poll_s` seconds so that a signal is handled promptly.

    Python runs signal handlers only in the main thread and only while it runs bytecode; a
    blocking wait is cut short only when the kernel hands the signal to the main thread. It
    may pick any thread (a worker busy projecting, say), and then the handler, hence Ctrl-C,
    would wait for the future. Short waits keep the main thread coming back to run it.
    """
    while not future.done():
        wait([future], timeout=poll_s)
    return future.result()

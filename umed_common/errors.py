"""User-facing errors: one line, non-zero exit, no traceback for a user mistake."""
from __future__ import annotations

import contextlib
import errno
import functools
import signal
import sys
import threading
from typing import Callable, Iterator

from .interrupts import Stopped, clear_stop, request_stop

# exit status of a run stopped by a signal: 128 + the signal number, as a shell reports it
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class UserError(Exception):
    """A mistake in the user's input (path, file, config); printed as one line."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so cleanup (finally) runs."""


class Interrupted(Exception):
    """A run that stopped early on request (SIGINT/SIGTERM) after saving its state."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def disk_full_error(err: OSError, path=None) -> UserError:
    """The one-line message for a full disk (or quota) while writing `path` (else the error's file)."""
    where = path if path is not None else (err.filename or "output")
    return UserError(f"{where}: cannot write ({err.strerror or 'No space left on device'})")


def _raise_terminated(signum, frame):
    request_stop()  # worker threads poll it (umed_common.interrupts)
    raise Terminated()


def _raise_keyboard_interrupt(signum, frame):
    request_stop()
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated and SIGINT KeyboardInterrupt in the main thread, and
    both ask work on other threads to stop (umed_common.interrupts); only signals that still have
    their default action are taken over. The stop flag is cleared on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = {signal.SIGTERM: (signal.SIG_DFL, _raise_terminated),
                signal.SIGINT: (signal.default_int_handler, _raise_keyboard_interrupt)}
    taken = [sig for sig, (default, _) in defaults.items() if signal.getsignal(sig) is default]
    if not taken:  # an enclosing command (or the embedding program) handles signals
        yield
        return
    for sig in taken:
        signal.signal(sig, defaults[sig][1])
    clear_stop()
    try:
        yield
    finally:
        for sig in taken:
            signal.signal(sig, defaults[sig][0])
        clear_stop()


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI main so a UserError prints `prog: error: msg` and exits 2.

    A full disk is reported the same way. KeyboardInterrupt exits 130 and SIGTERM 143,
    after the finally clauses ran (no half-written outputs); `Interrupted` (a run that
    saved its state first) exits with its own code. Any other exception is a bug and
    keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        prog = main.__module__.split(".")[0]
        try:
            with sigterm_raises():
                code = main(*args, **kwargs)
        except UserError as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            if err.errno not in DISK_FULL_ERRNOS:
                raise
            print(f"{prog}: error: {disk_full_error(err)}", file=sys.stderr)
            return 2
        except Interrupted as err:
            print(f"{prog}: {err}", file=sys.stderr)
            return err.exit_code
        except (KeyboardInterrupt, Stopped):
            print("interrupted", file=sys.stderr)
            return EXIT_SIGINT
        except Terminated:
            print("terminated", file=sys.stderr)
            return EXIT_SIGTERM
        return int(code or 0)

    return wrapper

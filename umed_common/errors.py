"""User-facing errors: one line, non-zero exit, no traceback for a user mistake."""
from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """A mistake in the user's input (path, file, config); printed as one line."""


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI main so a UserError prints `prog: error: msg` and exits 2.

    KeyboardInterrupt exits 130 quietly; any other exception is a bug and keeps
    its traceback.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            code = main(*args, **kwargs)
        except UserError as err:
            prog = main.__module__.split(".")[0]
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        return int(code or 0)

    return wrapper

"""The errors a user sees as one line: UserError (exit status 2: fix the file or setting)
and RetryError (exit status 1: something outside may change, a service manager tries
again). Exit statuses, one meaning each: 0 stopped by SIGTERM/SIGINT; 2 the user's file
or setting (chart, config, bank, model); 1 anything else (retry)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class UserError(Exception):
    """Something the user can fix: a bad chart, config, model path or port.

    The message is a single line that names the file (and line/column where
    known), the bad token and what is accepted.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.detail = message
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        return where + self.detail


class RetryError(UserError):
    """One clear line, like UserError, for what may pass without the user changing any file
    or setting: the JACK server not running yet, a port name still held by a melodyflowd
    that is stopping, a generator process killed (out of memory) while starting. Exit
    status 1, so that systemd's Restart=on-failure tries again."""

    exit_code = 1


def run_reporting_user_errors(prog: str, step: Callable[..., object], *args: Any,
                              **kwargs: Any) -> int:
    """Run `step` for a script's main(): 0 when it returns, a UserError's one line on stderr
    and its exit code when it raises one (the scripts outside click share this)."""
    try:
        step(*args, **kwargs)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0

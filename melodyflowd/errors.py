"""The one exception type a user can fix: the CLI prints it as one line and exits 2."""

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

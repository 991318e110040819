"""The rich consoles the command line prints through.

Rich lays tables out for 80 columns when the output is not a terminal. Scheduled and cron runs write
to log files, where that wraps every wide table into unreadable cells, so output that goes to a file
or a pipe is laid out :data:`LOG_WIDTH` columns wide instead, unless ``COLUMNS`` says otherwise.
"""

from __future__ import annotations

import os

from rich.console import Console

__all__ = ["LOG_WIDTH", "make_console"]

#: Columns for output that goes to a file or a pipe (enough for the widest benchmark table).
LOG_WIDTH = 160


def make_console(stderr: bool = False) -> Console:
    """A console on standard output (or error); :data:`LOG_WIDTH` wide when that is not a terminal.

    Args:
        stderr: Print to standard error instead of standard output.
    """
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=LOG_WIDTH)
    return console

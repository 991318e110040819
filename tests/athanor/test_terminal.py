from __future__ import annotations

import io

from rich.table import Table

from athanor.terminal import LOG_WIDTH, make_console


def test_output_to_a_file_is_laid_out_wide_unless_columns_says_otherwise(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    log = io.StringIO()  # not a terminal, like a cron job's log file
    monkeypatch.setattr("sys.stdout", log)
    console = make_console()
    assert console.width == LOG_WIDTH
    table = Table("method", *(f"column {i}" for i in range(6)))
    table.add_row("athanor-warp-ucb", *(f"{0.5 + i:.2f} (0.10–0.90)" for i in range(6)))
    console.print(table)
    rows = [line for line in log.getvalue().splitlines() if "athanor-warp-ucb" in line]
    assert len(rows) == 1 and "5.50 (0.10–0.90)" in rows[0]  # one line per row, nothing wrapped or cut
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console().width == 100
    assert make_console(stderr=True).stderr

"""A benchmark data set as a finite pool: read a CSV, average replicates, find the top candidates.

The CSV has a header row; every column is numeric; the last column is the objective and the others
are inputs. Rows with the same input vector are replicates and are averaged into one pool entry
(Liang et al. 2021, npj Comput. Mater. 7, 188), so the pool holds one row per unique input.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from athanor.errors import AthanorError

__all__ = ["TOP_FRACTION", "Pool", "group_replicates", "load_pool", "n_top_of"]

#: Share of the pool that counts as the top candidates.
TOP_FRACTION = 0.05


def n_top_of(size: int, fraction: float = TOP_FRACTION) -> int:
    """Number of top candidates in a pool of ``size``: ``ceil(fraction * size)``, at least 1."""
    # Round first so that 0.05 * 180 = 9.000000000000002 gives 9, not 10.
    return max(1, math.ceil(round(fraction * size, 9)))


def group_replicates(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average the values of rows with identical inputs.

    Args:
        x: ``r x d`` inputs.
        y: ``r`` values.

    Returns:
        ``N x d`` unique inputs (sorted lexicographically) and their ``N`` mean values.
    """
    unique, inverse = np.unique(x, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=y, minlength=len(unique))
    counts = np.bincount(inverse, minlength=len(unique))
    return unique, sums / counts


@dataclass(frozen=True, eq=False)
class Pool:
    """A data set's unique inputs and their mean objective.

    Attributes:
        name: Data-set name (the CSV's folder name, or its stem).
        columns: Input column names, the ``d`` columns of :attr:`x`.
        objective: Objective column name.
        x: ``N x d`` unique inputs.
        y: ``N`` mean objective per unique input.
        rows: Data rows in the CSV before averaging.
        direction: ``"max"`` or ``"min"``: which end of the objective is best.
    """

    name: str
    columns: tuple[str, ...]
    objective: str
    x: np.ndarray
    y: np.ndarray
    rows: int
    direction: Literal["max", "min"]

    @property
    def size(self) -> int:
        """Number of unique inputs ``N``."""
        return int(self.y.shape[0])

    @property
    def n_top(self) -> int:
        """Number of top candidates, ``ceil(0.05 N)``."""
        return n_top_of(self.size)

    def top_indices(self) -> np.ndarray:
        """Indices of the :attr:`n_top` best entries, best first (ties keep pool order)."""
        key = -self.y if self.direction == "max" else self.y
        return np.argsort(key, kind="stable")[: self.n_top]


def load_pool(path: Path | str, direction: Literal["max", "min"] = "max") -> Pool:
    """Read a benchmark CSV into a :class:`Pool`.

    Args:
        path: CSV file with a header; the last column is the objective, the others inputs.
        direction: ``"max"`` or ``"min"``.

    Raises:
        AthanorError: The file is missing, empty, ragged or not numeric, or the direction is unknown.
    """
    path = Path(path)
    if direction not in ("max", "min"):
        raise AthanorError(f"direction {direction!r} is not understood; use 'max' or 'min'")
    if not path.is_file():
        raise AthanorError(f"dataset {path} does not exist; give a CSV file (header, inputs, objective last)")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        table = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if len(table) < 2 or len(table[0]) < 2:
        raise AthanorError(
            f"dataset {path} needs a header and at least one data row with one or more input columns"
            " and the objective as the last column"
        )
    header = [cell.strip() for cell in table[0]]
    values = []
    for line, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise AthanorError(f"dataset {path} line {line} has {len(row)} cells, the header {len(header)}")
        try:
            numbers = [float(cell) for cell in row]
        except ValueError:
            raise AthanorError(
                f"dataset {path} line {line} holds a non-numeric cell; every column must be a number"
            ) from None
        if not all(math.isfinite(v) for v in numbers):
            raise AthanorError(f"dataset {path} line {line} holds a non-finite number; remove or fix the row")
        values.append(numbers)
    data = np.asarray(values, dtype=float)
    x, y = group_replicates(data[:, :-1], data[:, -1])
    if len(y) < 3:
        raise AthanorError(f"dataset {path} has {len(y)} unique input(s); a benchmark needs at least 3")
    name = path.parent.name if path.stem == "data" else path.stem
    return Pool(name, tuple(header[:-1]), header[-1], x, y, len(values), direction)

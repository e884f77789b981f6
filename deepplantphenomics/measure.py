"""Phenotypes from masks: one record per plant (area, shape, colour), pots of a tray, growth over time.

See docs/measure.md.
"""

from __future__ import annotations

import re

__all__ = ["cell_id", "parse_cell_id"]

_CELL_ID = re.compile(r"^([A-Za-z]+)([0-9]+)$")


def _row_letters(row: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (spreadsheet column style, so trays of more than 26 rows still work)."""
    letters = ""
    row += 1
    while row:
        row, rest = divmod(row - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def cell_id(row: int, col: int) -> str:
    """The id of a tray cell: row letter(s) and 1-based column number, e.g. (0, 0) -> 'A1', (1, 2) -> 'B3'."""
    return f"{_row_letters(row)}{col + 1}"


def parse_cell_id(name: str, grid: tuple[int, int], argument: str = "cell") -> tuple[int, int]:
    """(row, col), 0-based, of a cell id such as 'B3' in a ``grid`` of (rows, cols).

    Raises:
        ValueError: ``name`` is not an id of that grid (the message names ``argument``).
    """
    match = _CELL_ID.match(name.strip()) if isinstance(name, str) else None
    if match is not None:
        row = 0
        for letter in match.group(1).upper():
            row = row * 26 + ord(letter) - ord("A") + 1
        row, col = row - 1, int(match.group(2)) - 1
        if 0 <= row < grid[0] and 0 <= col < grid[1]:
            return row, col
    rows, cols = grid
    raise ValueError(
        f"Invalid value for argument `{argument}`: {name!r} is not a cell of a {rows}x{cols} grid; expected "
        f"a row letter A..{_row_letters(rows - 1)} and a column number 1..{cols}, e.g. 'A1'."
    )

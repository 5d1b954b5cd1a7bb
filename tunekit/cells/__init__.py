"""Cells, each declared once; reference, Triton and CUDA code are derived from the declaration.

``get_cell(name)`` returns a :class:`Cell`; ``CELLS`` maps names to the registered cells.
A new cell is one short file: declare a :class:`Cell` (see ``lstm.py``) and, to use it by name,
``register_cell(cell)``.
"""

from __future__ import annotations

from tunekit.cells.elman import ELMAN
from tunekit.cells.gru import GRU
from tunekit.cells.lstm import LSTM
from tunekit.cells.slstm import SLSTM
from tunekit.cells.spec import Cell, StepVars

__all__ = ["CELLS", "Cell", "StepVars", "get_cell", "register_cell"]

CELLS: dict[str, Cell] = {cell.name: cell for cell in (ELMAN, LSTM, GRU, SLSTM)}


def register_cell(cell: Cell, *, replace: bool = False) -> Cell:
    """Make ``cell`` known by its name (to ``get_cell``, the CLI and the kernel loaders)."""
    if not isinstance(cell, Cell):
        raise ValueError(f"cell: got {type(cell).__name__}, expected a tunekit.cells.Cell")
    if cell.name in CELLS and CELLS[cell.name] is not cell and not replace:
        raise ValueError(f"cell: the name {cell.name!r} is taken; pass replace=True to replace it")
    CELLS[cell.name] = cell
    return cell


def get_cell(cell: str | Cell) -> Cell:
    """The cell declared under ``name`` (a Cell passes through); ValueError names the known cells."""
    if isinstance(cell, Cell):
        return cell
    if not isinstance(cell, str) or cell.lower() not in CELLS:
        raise ValueError(f"cell: got {cell!r}, expected a Cell or one of {sorted(CELLS)}")
    return CELLS[cell.lower()]

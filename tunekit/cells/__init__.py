"""Cells, each declared once; reference, Triton and CUDA code are derived from the declaration.

``get_cell(name)`` returns a :class:`Cell`; ``CELLS`` maps names to the registered cells.
A new cell is one short file: declare a :class:`Cell` (see ``lstm.py``) and, to use it by name,
``register_cell(cell)``.

Importing the registry does not import SymPy: the declarations (:mod:`tunekit.cells.declaration`)
hold names and the step function, whose SymPy loads when code is derived from it. The problem and
the tuner read only the slot and state counts. ``StepVars`` (SymPy symbols) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunekit.cells.declaration import Cell
from tunekit.cells.elman import ELMAN
from tunekit.cells.gru import GRU
from tunekit.cells.lstm import LSTM
from tunekit.cells.slstm import SLSTM

if TYPE_CHECKING:
    from tunekit.cells.spec import StepVars

__all__ = ["CELLS", "Cell", "StepVars", "get_cell", "register_cell"]

CELLS: dict[str, Cell] = {cell.name: cell for cell in (ELMAN, LSTM, GRU, SLSTM)}


def __getattr__(name: str) -> Any:
    if name == "StepVars":  # imports SymPy, so only when asked for
        from tunekit.cells.spec import StepVars

        return StepVars
    raise AttributeError(f"module 'tunekit.cells' has no attribute {name!r}")


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

"""torch.nn's weight names and layouts, and the functional R and b the kernels take.

Per layer ``k`` and direction (suffix ``""``, or ``"_reverse"`` for the reverse direction), as
``torch.nn.LSTM``/``GRU``/``RNN``; H = hidden_size = N·D (N heads of D units):

=====================  ===============  ===================================================
``weight_ih_l{k}``      [G_w·H, in_k]    input projection; in_0 = input_size, else H·directions
``weight_hh_l{k}``      [G_r·H, D]       recurrence; with one head D = H: torch.nn's [G·H, H]
``bias_ih_l{k}``        [G_w·H]          added to the projection
``bias_hh_l{k}``        [G_r·H]          added to the recurrence
=====================  ===============  ===================================================

Rows are gate-major, ``g·H + n·D + i`` (gate g, head n, unit i), in torch.nn's gate order
(LSTM i, f, g(=z), o; GRU r, z, n; RNN one gate). **Heads:** the recurrence of a layer with N
heads is block-diagonal, head n's units seeing only head n's hidden state; ``weight_hh`` holds
just the diagonal blocks, row ``g·H + n·D + i``, column ``j`` being torch.nn's entry
``[g·H + n·D + i, n·D + j]``; as the functional R, ``weight_hh.view(G_r, N, D, D)`` — a view,
no copy. A dense torch.nn matrix [G·H, H] loads into an N-head layer only when every block
between heads is exactly zero (else a ValueError says how large the largest one is);
``to_block_diagonal`` writes the dense form (``layer.to_torch()``).

**Gates to kernel slots.** The kernels' slots (DESIGN §3) follow the cell's declaration: the
same order as torch.nn for LSTM, RNN and sLSTM (views), while the GRU's R holds (n_rec, r, z)
where weight_hh rows hold (r, z, n): one gather of R per forward (3·N·D² elements). The bias of
a slot is ``bias_ih`` of that gate (when the input feeds it) plus ``bias_hh`` of it (when the
recurrence does): ``b = bias_ih + bias_hh`` for LSTM, RNN and sLSTM; for the GRU
``b = (b_hh[n], b_ih[r] + b_hh[r], b_ih[z] + b_hh[z], b_ih[n])``, so torch.nn's ``b_hn`` stays
inside ``r ⊙ (W_hn h + b_hn)`` and ``b_in`` outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunekit.cells import Cell

# Slot names of each parameter's rows, in torch.nn's order, where they differ from the cell's
# declared order (w_gates for weight_ih/bias_ih, r_gates for weight_hh/bias_hh).
# torch.nn.GRU stacks (r, z, n): its W_hn is the cell's n_rec slot, its W_in the n_in slot.
TORCH_ROWS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gru": (("r", "z", "n_in"), ("r", "z", "n_rec")),
}


def parameter_names(layer: int, reverse: bool, bias: bool) -> list[str]:
    """torch.nn's parameter names of one layer and direction, in its registration order."""
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    names = [f"weight_ih{suffix}", f"weight_hh{suffix}"]
    return names + ([f"bias_ih{suffix}", f"bias_hh{suffix}"] if bias else [])


def _order(rows: tuple[str, ...], slots: tuple[str, ...]) -> list[int] | None:
    """Row index of each slot; None when the rows are already in slot order."""
    order = [rows.index(g) for g in slots]
    return None if order == list(range(len(slots))) else order


@dataclass(frozen=True)
class WeightLayout:
    """How one cell's torch.nn-named parameters become the kernels' Wx, R and b."""

    cell: Cell
    heads: int
    head_dim: int
    ih_rows: tuple[str, ...]
    hh_rows: tuple[str, ...]

    @classmethod
    def of(cls, cell: Cell, heads: int, head_dim: int, bias: bool) -> WeightLayout:
        ih_rows, hh_rows = TORCH_ROWS.get(cell.name, (cell.w_gates, cell.r_gates))
        layout = cls(cell, heads, head_dim, ih_rows, hh_rows)
        if bias:
            fed = set(ih_rows) | set(hh_rows)
            orphans = [g for g in cell.b_gates if g not in fed]
            unused = sorted(fed - set(cell.b_gates))
            if orphans or unused:
                raise ValueError(
                    f"bias: cell {cell.name!r} has bias slots {cell.b_gates} and gates {sorted(fed)}; "
                    "a layer's bias_ih/bias_hh give every gate a bias and each bias slot one gate "
                    f"(unmatched: {orphans + unused}); use bias=False"
                )
        return layout

    @property
    def hidden(self) -> int:
        return self.heads * self.head_dim

    def wx(self, projected: torch.Tensor) -> torch.Tensor:
        """[B, T, G_w·H] projected input → Wx [B, T, G_w, N, D] in the cell's slot order (a view
        when the orders agree, as for every built-in cell)."""
        batch, steps, _ = projected.shape
        wx = projected.view(batch, steps, len(self.ih_rows), self.heads, self.head_dim)
        order = _order(self.ih_rows, self.cell.w_gates)
        return wx if order is None else wx[:, :, order]

    def recurrence(self, weight_hh: torch.Tensor) -> torch.Tensor:
        """weight_hh [G_r·H, D] → R [G_r, N, D, D], output index first (a view, or one gather for the GRU)."""
        r = weight_hh.view(len(self.hh_rows), self.heads, self.head_dim, self.head_dim)
        order = _order(self.hh_rows, self.cell.r_gates)
        return r if order is None else r[order]

    def bias(self, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """b [G_t, N, D]: bias_ih of the slot's gate plus bias_hh of it; zeros without biases."""
        shape = (len(self.cell.b_gates), self.heads, self.head_dim)
        if b_ih is None or b_hh is None:
            return like.new_zeros(shape)
        if self.ih_rows == self.hh_rows == self.cell.b_gates:
            return (b_ih + b_hh).view(shape)
        ih = b_ih.view(len(self.ih_rows), self.heads, self.head_dim)
        hh = b_hh.view(len(self.hh_rows), self.heads, self.head_dim)
        slots = []
        for g in self.cell.b_gates:
            parts = [p[rows.index(g)] for p, rows in ((ih, self.ih_rows), (hh, self.hh_rows)) if g in rows]
            slots.append(parts[0] if len(parts) == 1 else parts[0] + parts[1])
        return torch.stack(slots)


def to_block_diagonal(compact: torch.Tensor, heads: int) -> torch.Tensor:
    """weight_hh of an N-head layer [G·H, D] → torch.nn's dense [G·H, H], zero between heads."""
    rows, head_dim = compact.shape
    gates = rows // (heads * head_dim)
    dense = compact.new_zeros(gates, heads, head_dim, heads, head_dim)
    # the diagonal over the two head dims is a view [G, D, D, N] of the blocks it writes
    torch.diagonal(dense, dim1=1, dim2=3).copy_(
        compact.view(gates, heads, head_dim, head_dim).permute(0, 2, 3, 1)
    )
    return dense.view(rows, heads * head_dim)


def from_block_diagonal(dense: torch.Tensor, heads: int, name: str) -> torch.Tensor:
    """torch.nn's dense weight_hh [G·H, H] → the N-head layer's [G·H, D]; ValueError unless every
    block between heads is exactly zero (they would be dropped)."""
    rows, hidden = dense.shape
    head_dim = hidden // heads
    gates = rows // hidden
    blocks = dense.detach().view(gates, heads, head_dim, heads, head_dim)
    compact = torch.diagonal(blocks, dim1=1, dim2=3).permute(0, 3, 1, 2).reshape(rows, head_dim)
    off = (blocks - to_block_diagonal(compact, heads).view_as(blocks)).abs().max()
    if off > 0:
        raise ValueError(
            f"{name}: got a dense [{rows}, {hidden}] recurrent matrix with nonzero entries between heads "
            f"(largest |entry| {float(off):.3g}); a layer with num_heads={heads} holds only the {heads} "
            f"diagonal {head_dim}x{head_dim} blocks of each gate. Load it into a layer with num_heads=1, "
            "or zero the blocks between heads first"
        )
    return compact.clone()

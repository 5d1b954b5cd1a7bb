"""The recurrent layer: torch.nn's arguments, parameters and return values around ``tunekit.rnn``.

Per layer and direction: ``Wx = input @ weight_ih.T`` viewed [B, T, G_w, N, D], R and b from
``weight_hh`` and the biases (:mod:`tunekit.layers.weights`), then ``tunekit.rnn`` with the
backend :mod:`tunekit.layer_backend` chose for the shape. Stacks, both directions, dropout
between layers and variable-length input (:mod:`tunekit.layers.sequences`) are done here, the
same way for every backend.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from tunekit.api import known_backends, rnn
from tunekit.cells import Cell, get_cell
from tunekit.checks import check_initial_states
from tunekit.layer_backend import Decision, choose
from tunekit.layers.sequences import Sequences, read_input
from tunekit.layers.weights import (
    WeightLayout,
    from_block_diagonal,
    parameter_names,
    to_block_diagonal,
)

State = torch.Tensor | tuple[torch.Tensor, ...]
_DECISIONS_MAX = 64  # shapes remembered per layer (batch sizes, dtypes, devices, directions)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: got {value!r}, expected a positive int")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: got {value!r}, expected True or False")
    return value


class RecurrentLayer(nn.Module):
    """A stack of recurrent layers of any cell, with torch.nn.LSTM's arguments and return values.

    ``tunekit.LSTM``, ``GRU``, ``RNN`` and ``SLSTM`` fix the cell; this class takes it as
    ``cell=`` (a name or a registered :class:`tunekit.cells.Cell`). Parameters carry torch.nn's
    names and layouts (:mod:`tunekit.layers.weights`). ``backend``: "auto" (decided per input shape,
    :mod:`tunekit.layer_backend`), "reference" or a backend name; ``config``: a KernelConfig or
    a mapping of that backend's tunables (None: tuned).
    """

    cell_name: ClassVar[str | None] = None  # the cell of LSTM, GRU, SLSTM; None: the cell= keyword
    torch_class: ClassVar[type[nn.Module] | None] = None  # the torch.nn class with the same function

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        num_heads: int = 1,
        backend: str = "auto",
        config: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        cell: str | Cell | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if unknown:
            listed = ", ".join(f"{k}={v!r}" for k, v in unknown.items())
            raise ValueError(
                f"unknown argument(s) {listed}: tunekit.{name} takes torch.nn's (input_size, "
                "hidden_size, num_layers, bias, batch_first, dropout, bidirectional) and num_heads, "
                "backend, config, device, dtype"
            )
        self.cell = self._cell_from(cell)
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.num_heads = _positive_int("num_heads", num_heads)
        self.bias = _flag("bias", bias)
        self.batch_first = _flag("batch_first", batch_first)
        self.bidirectional = _flag("bidirectional", bidirectional)
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size: got {hidden_size}, expected a multiple of num_heads={num_heads} "
                "(hidden = N * D)"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout: got {dropout!r}, expected a probability in [0, 1]")
        self.dropout = float(dropout)
        if dropout > 0 and num_layers == 1:  # torch.nn warns the same way (and applies none)
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                stacklevel=2,
            )
        if not isinstance(backend, str) or backend not in known_backends():
            raise ValueError(f"backend: got {backend!r}, expected one of {known_backends()}")
        if config is not None and backend == "reference":
            raise ValueError(
                "config: got a configuration with backend='reference', which has nothing to tune"
            )
        if config is not None and backend == "auto" and getattr(config, "family", None) is None:
            raise ValueError(
                "config: got a configuration without a family for backend='auto'; name the backend it is for "
                "(backend='triton-fused', ...) or pass a KernelConfig"
            )
        family = getattr(config, "family", None)
        if family is not None and backend not in ("auto", family):
            raise ValueError(
                f"config: got a {family} configuration for backend={backend!r}; pass one or the other"
            )
        self.backend, self.config = backend, config
        self.head_dim = hidden_size // num_heads
        self.layout = WeightLayout.of(self.cell, num_heads, self.head_dim, self.bias)
        self._register_weights({"device": device, "dtype": dtype})
        self.reset_parameters()
        self._decisions: dict[tuple[Any, ...], Decision] = {}
        self._last_key: tuple[Any, ...] | None = None

    # ---- construction --------------------------------------------------------------------------

    def _cell_from(self, cell: str | Cell | None) -> Cell:
        fixed = type(self).cell_name
        if fixed is None:
            if cell is None:
                raise ValueError(
                    "cell: got None, expected a cell name or a Cell (or use tunekit.LSTM, GRU, ...)"
                )
            return get_cell(cell)
        if cell is not None and get_cell(cell).name != fixed:
            got = cell if isinstance(cell, str) else cell.name
            raise ValueError(
                f"cell: got {got!r} for tunekit.{type(self).__name__}, whose cell is {fixed!r}; "
                "use the layer of that cell (tunekit.GRU, ...) or "
                f"tunekit.layers.RecurrentLayer(..., cell={got!r})"
            )
        return get_cell(fixed)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _register_weights(self, factory: dict[str, Any]) -> None:
        """torch.nn's parameters, in its order: per layer, per direction, w_ih, w_hh, b_ih, b_hh."""
        hidden, g_w, g_r = self.hidden_size, len(self.layout.ih_rows), len(self.layout.hh_rows)
        self._flat_weights_names: list[str] = []
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else hidden * self.num_directions
            for d in range(self.num_directions):
                shapes = [
                    (g_w * hidden, in_k),
                    (g_r * hidden, self.head_dim),
                    (g_w * hidden,),
                    (g_r * hidden,),
                ]
                for name, shape in zip(parameter_names(k, d == 1, self.bias), shapes, strict=False):
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name)

    def reset_parameters(self) -> None:
        """Uniform(±1/√hidden_size) for every parameter, as torch.nn (one head: the same draws)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Per layer and direction, its parameters (as torch.nn's ``all_weights``)."""
        return [
            [getattr(self, n) for n in parameter_names(k, d == 1, self.bias)]
            for k in range(self.num_layers)
            for d in range(self.num_directions)
        ]

    def flatten_parameters(self) -> None:
        """A no-op kept for drop-in code: tunekit keeps no flat weight buffer (cuDNN's)."""

    # ---- torch.nn weights ------------------------------------------------------------------------

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # a dense torch.nn weight_hh [G·H, H] into an N-head layer: its diagonal blocks, or an error
        if self.num_heads > 1:
            for k in range(self.num_layers):
                for d in range(self.num_directions):
                    key = prefix + parameter_names(k, d == 1, False)[1]
                    value = state_dict.get(key)
                    if isinstance(value, torch.Tensor) and value.shape == (
                        len(self.layout.hh_rows) * self.hidden_size,
                        self.hidden_size,
                    ):
                        state_dict[key] = from_block_diagonal(value, self.num_heads, key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def torch_state_dict(self) -> dict[str, torch.Tensor]:
        """The state_dict in torch.nn's layout: weight_hh dense [G·H, H] (zero between heads)."""
        state = {k: v.detach() for k, v in self.state_dict().items()}
        if self.num_heads > 1:
            for key in [k for k in state if k.startswith("weight_hh_")]:
                state[key] = to_block_diagonal(state[key], self.num_heads)
        return state

    def _torch_arguments(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_torch(cls, module: nn.Module, *, num_heads: int = 1, backend: str = "auto", config: Any = None):
        """A tunekit layer with the arguments and weights of ``module`` (its torch.nn class)."""
        if cls.torch_class is None:
            raise ValueError(f"module: tunekit.{cls.__name__} has no torch.nn counterpart to convert from")
        if type(module) is not cls.torch_class:
            raise ValueError(
                f"module: got {type(module).__name__}, expected torch.nn.{cls.torch_class.__name__} "
                f"for tunekit.{cls.__name__}.from_torch"
            )
        if getattr(module, "proj_size", 0):
            raise ValueError(f"module: got proj_size={module.proj_size}; tunekit.LSTM has no projections")
        parameter = next(module.parameters())
        extra = {"nonlinearity": module.nonlinearity} if hasattr(module, "nonlinearity") else {}
        layer = cls(
            module.input_size,
            module.hidden_size,
            module.num_layers,
            bias=module.bias,
            batch_first=module.batch_first,
            dropout=module.dropout,
            bidirectional=module.bidirectional,
            num_heads=num_heads,
            backend=backend,
            config=config,
            device=parameter.device,
            dtype=parameter.dtype,
            **extra,
        )
        layer.load_state_dict(module.state_dict())
        return layer.train(module.training)

    def to_torch(self) -> nn.Module:
        """The torch.nn layer computing the same function (N heads: weight_hh dense, zero between heads)."""
        if type(self).torch_class is None:
            raise ValueError(f"tunekit.{type(self).__name__} ({self.cell.name}) has no torch.nn counterpart")
        parameter = next(self.parameters())
        module = type(self).torch_class(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            dropout=self.dropout,
            bidirectional=self.bidirectional,
            device=parameter.device,
            dtype=parameter.dtype,
            **self._torch_arguments(),
        )
        module.load_state_dict(self.torch_state_dict())
        return module.train(self.training)

    # ---- which backend runs ------------------------------------------------------------------------

    def _decision(self, batch: int, x: torch.Tensor, needs_grad: bool) -> Decision:
        """The backend for this shape, decided once (tuning never runs on every forward)."""
        direction = "both" if needs_grad else "forward"
        key = (x.device, x.dtype, batch, direction)
        decision = self._decisions.get(key)
        if decision is None:
            decision = choose(
                self.backend,
                self.config,
                self.cell,
                batch=batch,
                heads=self.num_heads,
                head_dim=self.head_dim,
                dtype=x.dtype,
                device=x.device,
                direction=direction,
            )
            if len(self._decisions) >= _DECISIONS_MAX:
                del self._decisions[next(iter(self._decisions))]
            self._decisions[key] = decision
        self._last_key = key
        return decision

    def describe(self) -> str:
        """What runs for each shape seen so far: backend, configuration, trust tier and why."""
        lines = [
            f"tunekit.{type(self).__name__}: cell {self.cell.name}, {self.num_layers} layer(s) x "
            f"{self.num_directions} direction(s), hidden {self.hidden_size} = {self.num_heads} head(s) x "
            f"{self.head_dim}, backend={self.backend!r}"
        ]
        for (device, dtype, batch, direction), decision in self._decisions.items():
            lines.append(f"  B={batch} {str(dtype).removeprefix('torch.')} on {device}, {direction}: "
                         f"{decision.describe()}")  # fmt: skip
        if not self._decisions:
            lines.append(
                "  not run yet: the backend is decided per input shape at its first forward"
                + (" (auto: the reference on a CPU, the fastest fitting tuned kernel on a GPU)" if
                   self.backend == "auto" else "")
            )  # fmt: skip
        return "\n".join(lines)

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if type(self) is RecurrentLayer:
            parts.append(f"cell={self.cell.name}")
        for name, default in (("bias", True), ("batch_first", False), ("bidirectional", False)):
            if getattr(self, name) != default:
                parts.append(f"{name}={getattr(self, name)}")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        parts.append(f"num_heads={self.num_heads}")
        backend = f"backend={self.backend!r}"
        if self._last_key is not None:
            backend += (
                f" -> {self._decisions[self._last_key].summary()}"
                if self._last_key in self._decisions
                else ""
            )
        return ", ".join([*parts, backend])

    # ---- forward ------------------------------------------------------------------------------------

    def forward(
        self, input: torch.Tensor | PackedSequence, hx: State | None = None, *, lengths: Any = None
    ) -> tuple[torch.Tensor | PackedSequence, State]:
        """As torch.nn: ``input`` [T, B, input_size] ([B, T, ...] if batch_first), unbatched
        [T, input_size], or a PackedSequence; ``hx`` the initial states, each
        [num_layers * num_directions, B, hidden_size] (a tuple for several states, as LSTM's (h_0, c_0));
        ``lengths``: B sequence lengths of a padded batch. Returns ``(output, h_n)`` with
        ``h_n`` shaped like ``hx``; outputs past a sequence's end are zero."""
        parameter = self.get_parameter(self._flat_weights_names[0])
        seq = read_input(input, self.input_size, self.batch_first, lengths, like=parameter)
        count = self.num_layers * self.num_directions
        initial = None
        if hx is not None:
            initial = check_initial_states(
                hx, self.cell.states, count, seq.batch, self.hidden_size, seq.x, unbatched=seq.unbatched
            )
        needs_grad = torch.is_grad_enabled() and (
            seq.x.requires_grad
            or any(p.requires_grad for p in self.parameters())
            or any(h.requires_grad for h in initial or ())
        )
        decision = self._decision(seq.batch, seq.x, needs_grad)
        layer_input, finals = seq.x, []
        for k in range(self.num_layers):
            outputs = []
            for d in range(self.num_directions):
                output, final = self._direction(k, d, layer_input, seq, initial, decision)
                outputs.append(output)
                finals.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_input = seq.dropout(layer_input, self.dropout)
        # finals: per (layer, direction) [S, B, N, D] -> per state [L * dirs, B, H]
        states = torch.stack(finals, dim=1).reshape(len(self.cell.states), count, seq.batch, self.hidden_size)
        if seq.unbatched:
            states = states[:, :, 0]
        h_n = states[0] if len(self.cell.states) == 1 else tuple(states.unbind(0))
        return seq.output(layer_input, self.batch_first), h_n

    def _direction(
        self,
        k: int,
        d: int,
        x: torch.Tensor,
        seq: Sequences,
        initial: tuple[torch.Tensor, ...] | None,
        decision: Decision,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer and direction over [B, T, F]: (outputs [B, T, H], final states [S, B, N, D])."""
        names = parameter_names(k, d == 1, self.bias)
        w_ih, w_hh = self.get_parameter(names[0]), self.get_parameter(names[1])
        b_ih, b_hh = (self.get_parameter(n) for n in names[2:]) if self.bias else (None, None)
        if d == 1:
            x = seq.reverse(x)
        wx = self.layout.wx(nn.functional.linear(x, w_ih))
        r = self.layout.recurrence(w_hh)
        b = self.layout.bias(b_ih, b_hh, like=wx)
        states = None
        if initial is not None:
            index = k * self.num_directions + d
            shape = (seq.batch, 1, self.num_heads, self.head_dim)
            states = torch.stack([h[index].reshape(shape) for h in initial])
        all_states, last = rnn(
            wx, r, b, states, cell=self.cell, backend=decision.backend, config=decision.config
        )
        output = seq.zero_past_end(all_states[0].reshape(seq.batch, seq.steps, self.hidden_size))
        return (seq.reverse(output) if d == 1 else output), seq.final(all_states, last)

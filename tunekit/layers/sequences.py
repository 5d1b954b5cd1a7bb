"""Batches of sequences, padded or packed, over the functional ``tunekit.rnn`` (whole padded runs).

The input is read into one batch-first padded tensor [B, T, F] (T the longest sequence) and,
when the sequences differ in length, their lengths. Then, per layer and direction, with any
backend (it only sees whole padded sequences):

* forward direction: the padded batch runs as it is; outputs past each sequence's end are set to
  zero, and its final states are gathered at its own last step from ``all_states``;
* reverse direction: each sequence's valid prefix is reversed in place (a gather with index
  ``len − 1 − t`` for ``t < len``; the padding stays at the end), run forward, and the outputs
  reversed back by the same gather; so the reverse run starts at each sequence's own end.

Cost beside the recurrence: per layer and direction one masked fill of the outputs [B, T, H] and
a gather of the final states [S, B, H]; the reverse direction gathers its input [B, T, F] and its
outputs once each (a flip when all lengths are equal). The recurrence itself runs B·T steps
whatever the lengths: the steps past each end are wasted work, a share 1 − Σlen / (B·T) of it.
Values past a sequence's end are never read: padded input is zeroed there before the projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from tunekit.checks import check_layer_input, check_lengths, check_tensor


@dataclass
class Sequences:
    """A batch read from a layer's input: ``x`` [B, T, F] batch-first, zero past each end."""

    x: torch.Tensor
    lengths: torch.Tensor | None  # [B] int64 on x's device; None when every sequence has T steps
    host_lengths: torch.Tensor | None  # [B] int64 on the CPU, for packing (packed input only)
    packed: PackedSequence | None  # the input when it was packed: its batch sizes and permutation
    unbatched: bool

    def __post_init__(self) -> None:
        self._reverse_index: torch.Tensor | None = None
        self._valid: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def steps(self) -> int:
        return self.x.shape[1]

    def valid(self) -> torch.Tensor:
        """[B, T] True at each sequence's own steps (only when lengths differ)."""
        assert self.lengths is not None
        if self._valid is None:
            steps = torch.arange(self.steps, device=self.x.device)
            self._valid = steps[None, :] < self.lengths[:, None]
        return self._valid

    def reverse(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, F] with each sequence's valid prefix reversed (its own inverse)."""
        if self.lengths is None:
            return x.flip(1)
        if self._reverse_index is None:
            steps = torch.arange(self.steps, device=x.device)[None, :]
            self._reverse_index = torch.where(self.valid(), self.lengths[:, None] - 1 - steps, steps)
        return torch.gather(x, 1, self._reverse_index[:, :, None].expand_as(x))

    def final(self, all_states: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Each sequence's states after its own last step: [S, B, N, D] from the functional outputs."""
        if self.lengths is None:
            return last[:, :, 0]
        return all_states[:, torch.arange(self.batch, device=self.x.device), self.lengths - 1]

    def zero_past_end(self, output: torch.Tensor) -> torch.Tensor:
        """[B, T, H] with zeros past each sequence's end, as pad_packed_sequence gives."""
        if self.lengths is None:
            return output
        return output.masked_fill(~self.valid()[:, :, None], 0)

    def dropout(self, output: torch.Tensor, p: float) -> torch.Tensor:
        """torch.nn's dropout between layers, with its masks: torch draws them over the layer's
        output in its own layout (time-major [T, B, F]; the packed data [Σlen, F] for packed
        input) with ``bernoulli_(1 − p)`` then ``/ (1 − p)`` (ATen's _dropout_impl on a CPU), so
        under one seed both draw the same numbers in the same order."""
        if p == 1:  # ATen multiplies by zero here without drawing
            return output * 0
        if self.packed is not None:
            data = self.packed.data
            noise = data.new_empty(data.shape[0], output.shape[-1]).bernoulli_(1 - p).div_(1 - p)
            as_packed = PackedSequence(noise, self.packed.batch_sizes, *self._permutation())
            noise, _ = pad_packed_sequence(as_packed, batch_first=True, total_length=self.steps)
            return output * noise
        noise = output.new_empty(self.steps, self.batch, output.shape[-1]).bernoulli_(1 - p).div_(1 - p)
        return output * noise.transpose(0, 1)

    def _permutation(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        assert self.packed is not None
        return self.packed.sorted_indices, self.packed.unsorted_indices

    def output(self, output: torch.Tensor, batch_first: bool) -> torch.Tensor | PackedSequence:
        """[B, T, F] → the layer's output in the input's form (packed, unbatched, batch-first or not)."""
        if self.packed is not None:
            sorted_indices, unsorted_indices = self._permutation()
            lengths = self.host_lengths
            if sorted_indices is not None:
                output = output.index_select(0, sorted_indices)
                lengths = lengths[sorted_indices.cpu()]
            data = pack_padded_sequence(output, lengths, batch_first=True).data
            return PackedSequence(data, self.packed.batch_sizes, sorted_indices, unsorted_indices)
        if self.unbatched:
            return output[0]
        return output if batch_first else output.transpose(0, 1).contiguous()


def read_input(
    input: torch.Tensor | PackedSequence,
    input_size: int,
    batch_first: bool,
    lengths: object,
    like: torch.Tensor,
) -> Sequences:
    """Check a layer's input (and ``lengths=``) and read it into :class:`Sequences`."""
    if isinstance(input, PackedSequence):
        if lengths is not None:
            raise ValueError(
                "lengths: got lengths with a PackedSequence input, which carries its own; "
                "pass one or the other"
            )
        check_tensor("input.data", input.data, "[sum of lengths, input_size]", 2)
        if input.data.shape[-1] != input_size:
            raise ValueError(
                f"input.data: got shape {tuple(input.data.shape)}, expected [sum of lengths, input_size="
                f"{input_size}]"
            )
        check_layer_input(input.data[:1], input_size, True, like=like)  # dtype and device
        x, host = pad_packed_sequence(input, batch_first=True)
        equal = bool((host == x.shape[1]).all())
        device_lengths = None if equal else host.to(x.device)
        return Sequences(x, device_lengths, host, input, unbatched=False)
    check_layer_input(input, input_size, batch_first, like=like)
    unbatched = input.dim() == 2
    if unbatched and lengths is not None:
        raise ValueError(
            "lengths: got lengths with unbatched (2-D) input, which is one sequence; slice it instead"
        )
    x = input.unsqueeze(0) if unbatched else input if batch_first else input.transpose(0, 1)
    sequences = Sequences(x, None, None, None, unbatched)
    if lengths is not None:
        values = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
        if not bool((values == x.shape[1]).all()):
            sequences.lengths = values
            sequences.x = x.masked_fill(~sequences.valid()[:, :, None], 0)
    return sequences

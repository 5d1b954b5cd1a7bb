"""The sLSTM is finite for every finite input, in every backend (DESIGN §3, issue 13).

n == 0 is an empty memory: f'c and f'n are exactly 0 there, so the first step is c' = tanh(z),
n' = 1, y' = σ(o) tanh(z) whatever i and f are, and an initial c given with n == 0 is ignored and
gets a zero gradient. FlashRNN's formula overflows there (f' = exp(lf - i) = inf once
i < lf - 88.7 in float32) and fills the sequence with NaN, forward and backward.

Each case runs the reference (``tunekit.rnn``, computing in the input dtype) and triton-fused
(Triton's interpreter, fp32 inside) and compares all states, the final states and the gradients
of Wx, R, b with ``tunekit.rnn`` in float64 on the same rounded inputs; a breach of
``atol + rtol * max|reference|`` fails. With pre-activations of ±1e4, R = 0 keeps every gate
exactly ±1e4 in every dtype (bf16's spacing at 1e4 is 64, so a small R·y would be rounded away in
a bf16 reference but not in float64, and exp of that difference is no rounding error any more).
bf16: Triton's interpreter truncates fp32 -> bf16 (see tests/test_triton_fused.py and its canary in
tests/test_printers.py), so its stored bf16 values are up to one ulp (2^-7) toward zero; rtol 3e-2 covers it.
T = 8192 runs in the reference only: the interpreter takes ~5 ms a step; the compiled kernel's run
of it is a GPU test.
"""

from __future__ import annotations

import pytest
import torch

import tunekit
from tunekit.kernels.triton_fused import fused_rnn

TOL = {torch.float32: (2e-5, 1e-6), torch.float16: (5e-3, 1e-4), torch.bfloat16: (3e-2, 1e-3)}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# numpy (under Triton's interpreter and torch's CPU kernels alike) warns on an overflow: make it fail
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

CONFIG = {"block_b": 16, "num_warps": 4, "num_stages": 1}
GATE = {"i": 0, "f": 1, "z": 2, "o": 3}
Y, C, N_, M = 0, 1, 2, 3  # state indices


def run(backend: str, Wx, R, b, s0=None):
    if backend == "reference":
        return tunekit.rnn(Wx, R, b, s0, cell="slstm")
    return fused_rnn(Wx, R, b, s0, cell="slstm", config=CONFIG)


def forward_and_grads(backend, Wx, R, b, s0=None, seed=0):
    """(all_states, last, grads of Wx, R, b, s0) for a loss on every gradient state and on ``last``."""
    leaves = [t.detach().clone().requires_grad_() for t in (Wx, R, b)]
    start = None if s0 is None else s0.detach().clone().requires_grad_()
    all_states, last = run(backend, *leaves, start)
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(all_states.shape, generator=g, dtype=torch.float64)
    weights_last = torch.randn(last.shape, generator=g, dtype=torch.float64)
    weights[M] = weights_last[M] = 0.0  # the stabilizer carries no gradient
    loss = (all_states.double() * weights).sum() + (last.double() * weights_last).sum()
    grads = torch.autograd.grad(loss, [*leaves] + ([start] if start is not None else []))
    return all_states.detach(), last.detach(), grads


def check(backend: str, dtype: torch.dtype, Wx, R, b, s0=None):
    """Finite forward and backward in ``dtype``, equal to float64 on the rounded inputs."""
    rounded = [None if t is None else t.to(dtype) for t in (Wx, R, b, s0)]
    got = forward_and_grads(backend, *rounded)
    want = forward_and_grads("reference", *(None if t is None else t.double() for t in rounded))
    rtol, atol = TOL[dtype]
    names = ["all_states", "last", "dWx", "dR", "db", "ds0"]
    flat_got = [got[0], got[1], *got[2]]
    flat_want = [want[0], want[1], *want[2]]
    for name, actual, expected in zip(names, flat_got, flat_want, strict=False):
        assert torch.isfinite(actual).all(), f"{backend} {dtype}: {name} is not finite"
        error = (actual.double() - expected).abs().max().item()
        bound = atol + rtol * expected.abs().max().item()
        assert error <= bound, f"{backend} {dtype}: {name} max error {error:.3e} > {bound:.3e}"
    return got


BACKEND_CASES = [
    pytest.param(backend, dtype, id=f"{backend}-{dtype_id}")
    for backend in ("reference", "triton-fused")
    for dtype_id, dtype in DTYPES.items()
]


@pytest.mark.parametrize(("backend", "dtype"), BACKEND_CASES)
def test_an_input_gate_of_minus_100_at_the_first_step_is_finite_and_exact(backend, dtype):
    """The issue's reproduction: B=T=N=D=1, i = -100, f = 0 at the first step (then two ordinary steps)."""
    g = torch.Generator().manual_seed(1)
    Wx = torch.randn(1, 3, 4, 1, 1, generator=g)
    Wx[0, 0, :, 0, 0] = torch.tensor([-100.0, 0.0, 0.5, 0.25])  # i, f, z, o of the first step
    R = 0.5 * torch.randn(4, 1, 1, 1, generator=g)
    b = torch.zeros(4, 1, 1)
    all_states, _, _ = check(backend, dtype, Wx, R, b)
    # the first step on an empty memory: m' = i, i' = 1, c' = tanh(z), n' = 1, y' = σ(o) tanh(z)
    first = all_states[:, 0, 0, 0, 0].double()
    z, o = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64)
    expected = torch.stack(
        [torch.sigmoid(o) * torch.tanh(z), torch.tanh(z), torch.tensor(1.0), torch.tensor(-100.0)]
    )
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(first, expected.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize(("backend", "dtype"), BACKEND_CASES)
def test_preactivations_of_plus_minus_1e4_are_finite_and_exact(backend, dtype):
    """Every gate at ±1e4 (random signs) over 6 steps, 2 heads, odd D: both branches of max(i, lf),
    saturated sigmoids and tanh, exponents of -2e4; from zeros and from a state with n == 0 rows."""
    B, T, N, D = 3, 6, 2, 5
    g = torch.Generator().manual_seed(2)
    Wx = 1e4 * torch.randn(B, T, 4, N, D, generator=g).sign()
    R, b = torch.zeros(4, N, D, D), torch.zeros(4, N, D)
    check(backend, dtype, Wx, R, b)
    s0 = torch.randn(4, B, 1, N, D, generator=g).sign()  # y, c = ±1
    s0[M] *= 1e4  # m = ±1e4: lf = m + logσ(±1e4) stays a multiple of 1e4, exact in every dtype
    s0[N_] = 1.0 + (torch.arange(B) % 2).view(B, 1, 1, 1).expand(B, 1, N, D)  # n in {1, 2}
    s0[N_, 0] = 0.0  # batch row 0: an empty memory
    check(backend, dtype, Wx, R, b, s0)


@pytest.mark.parametrize("backend", ["reference", "triton-fused"])
def test_an_initial_c_with_n_zero_is_ignored_and_gets_a_zero_gradient(backend):
    B, T, N, D = 2, 4, 1, 3
    g = torch.Generator().manual_seed(3)
    Wx = torch.randn(B, T, 4, N, D, generator=g)
    R = torch.randn(4, N, D, D, generator=g) / D**0.5
    b = torch.randn(4, N, D, generator=g)
    s0 = torch.randn(4, B, 1, N, D, generator=g)
    s0[N_, 0] = 0.0  # row 0 starts empty, whatever its c says
    s0[C, 0] = 1e30
    s0[N_, 1] = 1.5  # row 1 continues a sequence
    states, last, grads = forward_and_grads(backend, Wx, R, b, s0)
    cleared = s0.clone()
    cleared[C, 0] = 0.0
    same, _, _ = forward_and_grads(backend, Wx, R, b, cleared)
    assert torch.isfinite(states).all()
    torch.testing.assert_close(states[:, 0], same[:, 0], rtol=0, atol=0)
    d_s0 = grads[3]
    assert (d_s0[C, 0] == 0).all() and (d_s0[N_, 0] == 0).all()  # nothing flows into an empty memory
    assert (d_s0[C, 1] != 0).all()  # while a continued one gets its gradient


def test_8192_steps_of_bf16_inputs_stay_finite_in_the_reference():
    """Pre-activations from ±1 to ±1e4 (log-uniform magnitudes) over 8192 steps, in bf16 arithmetic,
    starting with i = -1e4 on the empty memory."""
    B, T, N, D = 1, 8192, 1, 2
    g = torch.Generator().manual_seed(4)
    magnitude = 10 ** (4 * torch.rand(B, T, 4, N, D, generator=g))
    Wx = magnitude * torch.randn(B, T, 4, N, D, generator=g).sign()
    Wx[:, 0, GATE["i"]] = -1e4  # an empty memory met by a far negative input gate
    Wx = Wx.bfloat16().requires_grad_()
    R = (torch.randn(4, N, D, D, generator=g) / D**0.5).bfloat16().requires_grad_()
    b = torch.zeros(4, N, D, dtype=torch.bfloat16, requires_grad=True)
    all_states, last = tunekit.rnn(Wx, R, b, cell="slstm")
    assert torch.isfinite(all_states).all()
    assert all_states[Y].abs().max() <= 1.0  # |y| = σ(o)|c|/n <= 1
    (all_states[Y].float().sum() + last[C].float().sum()).backward()
    for name, tensor in (("Wx", Wx), ("R", R), ("b", b)):
        assert torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
def test_8192_steps_and_extremes_stay_finite_in_the_compiled_kernel(dtype):
    import triton

    B, T, N, D = 4, 8192, 2, 32
    g = torch.Generator().manual_seed(5)
    magnitude = 10 ** (4 * torch.rand(B, T, 4, N, D, generator=g))
    Wx = magnitude * torch.randn(B, T, 4, N, D, generator=g).sign()
    Wx[:, 0, GATE["i"]] = -1e4
    Wx = Wx.to(dtype).cuda().requires_grad_()
    R = (torch.randn(4, N, D, D, generator=g) / D**0.5).to(dtype).cuda().requires_grad_()
    b = torch.zeros(4, N, D, dtype=dtype, device="cuda", requires_grad=True)
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = False
        all_states, last = fused_rnn(Wx, R, b, cell="slstm", config=CONFIG)
        (all_states[Y].float().sum() + last[C].float().sum()).backward()
    assert torch.isfinite(all_states).all() and all_states[Y].abs().max() <= 1.0
    for name, tensor in (("Wx", Wx), ("R", R), ("b", b)):
        assert torch.isfinite(tensor.grad).all(), name

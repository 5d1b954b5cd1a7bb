"""``tunekit.rnn`` dispatches to registered backends by name.

Specs: "auto" is the reference on CPU and the fused Triton kernel on a CUDA device; an unknown
backend is a ValueError listing the known ones; known but unavailable backends say why; a user
registers a backend without editing tunekit; non-reference backends need a registered cell.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cellcases import MGU

import tunekit
from tunekit import api
from tunekit.api import BackendUnavailableError, known_backends, register_backend, resolve_backend


def lstm_inputs(dtype=torch.float64):
    """Wx [B=3, T=5, 4, N=2, D=6], R [4, 2, 6, 6], b [4, 2, 6]."""
    g = torch.Generator().manual_seed(0)
    Wx = torch.randn(3, 5, 4, 2, 6, generator=g, dtype=dtype)
    R = torch.randn(4, 2, 6, 6, generator=g, dtype=dtype) / 3
    return Wx, R, torch.randn(4, 2, 6, generator=g, dtype=dtype)


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the backend registry, so registrations end with the test."""
    monkeypatch.setattr(api, "_BACKENDS", dict(api._BACKENDS))
    return api._BACKENDS


def test_auto_is_the_reference_on_cpu():
    Wx, R, b = lstm_inputs()
    assert resolve_backend("auto", torch.device("cpu")) == "reference"
    auto, auto_last = tunekit.rnn(Wx, R, b, cell="lstm", backend="auto")
    reference, reference_last = tunekit.rnn(Wx, R, b, cell="lstm", backend="reference")
    torch.testing.assert_close(auto, reference, rtol=0, atol=0)
    torch.testing.assert_close(auto_last, reference_last, rtol=0, atol=0)


def test_auto_prefers_the_fused_triton_kernel_on_a_gpu():
    assert resolve_backend("auto", torch.device("cuda", 0)) == "triton-fused"


def test_auto_falls_back_to_the_reference_when_no_tuned_config_fits(registry, monkeypatch):
    from tunekit.hardware import load_profile
    from tunekit.problem import Problem
    from tunekit.tuning import NoFeasibleConfig

    def nothing_fits(Wx, R, b, states, *, cell, config):
        problem = Problem(cell, batch=3, heads=2, head_dim=6, dtype="float32")
        raise NoFeasibleConfig(problem, load_profile("a100"), ())

    Wx, R, b = lstm_inputs()
    reference, _ = tunekit.rnn(Wx, R, b, cell="lstm")
    register_backend("triton-fused", nothing_fits, replace=True)
    monkeypatch.setattr(api, "resolve_backend", lambda backend, device: "triton-fused")  # as on a GPU
    out, _ = tunekit.rnn(Wx, R, b, cell="lstm", backend="auto")
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    with pytest.raises(NoFeasibleConfig):  # named explicitly, the backend's error reaches the caller
        tunekit.rnn(Wx, R, b, cell="lstm", backend="triton-fused")


@pytest.mark.parametrize(
    "backend", ["fastest", "Reference", "", None, 3], ids=["typo", "case", "empty", "none", "int"]
)
def test_unknown_backend_lists_the_known_ones(backend):
    Wx, R, b = lstm_inputs()
    with pytest.raises(
        ValueError, match=r"backend: got .*, expected one of \['auto', .*'reference', 'triton-fused'"
    ):
        tunekit.rnn(Wx, R, b, cell="lstm", backend=backend)


def test_known_backends_names_auto_reference_triton_and_the_planned_cuda_ones():
    names = known_backends()
    assert names[0] == "auto"
    assert {"reference", "triton-fused", "cuda-alternating", "cuda-fused"} <= set(names)


def test_planned_backend_says_it_is_not_implemented(registry, monkeypatch):
    monkeypatch.setattr(api, "PLANNED_BACKENDS", ("some-planned",))  # known, no module provides it
    with pytest.raises(
        BackendUnavailableError, match=r"backend 'some-planned' is known but not implemented yet"
    ):
        resolve_backend("some-planned", torch.device("cpu"))


def test_a_registered_backend_receives_the_cell_name_and_layouts(registry):
    calls = []

    def echo(Wx, R, b, states, *, cell, config):
        calls.append((Wx.shape, R.shape, b.shape, states, cell, config))
        return tunekit.rnn(Wx, R, b, states, cell=cell)

    register_backend("echo", echo)
    assert "echo" in known_backends()
    Wx, R, b = lstm_inputs()
    out, _ = tunekit.rnn(Wx, R, b, cell="lstm", backend="echo", config={"block_b": 16})
    assert calls == [(Wx.shape, R.shape, b.shape, None, "lstm", {"block_b": 16})]
    torch.testing.assert_close(out, tunekit.rnn(Wx, R, b, cell="lstm")[0], rtol=0, atol=0)


def test_unavailable_backend_says_why(registry):
    register_backend("needs-tpu", lambda *a, **k: None, available=lambda device: f"no TPU next to {device}")
    Wx, R, b = lstm_inputs()
    with pytest.raises(
        BackendUnavailableError, match=r"backend 'needs-tpu' is known but unavailable here: no TPU"
    ):
        tunekit.rnn(Wx, R, b, cell="lstm", backend="needs-tpu")


def test_lazy_backend_that_cannot_import_says_so(registry):
    register_backend("ghost", "tunekit.no_such_module:run")
    Wx, R, b = lstm_inputs()
    with pytest.raises(BackendUnavailableError, match=r"importing tunekit.no_such_module:run failed"):
        tunekit.rnn(Wx, R, b, cell="lstm", backend="ghost")


@pytest.mark.parametrize(
    ("name", "fn", "message"),
    [
        ("auto", lambda: None, r"name: got 'auto', expected a non-empty backend name other than 'auto'"),
        ("", lambda: None, r"name: got '', expected a non-empty backend name"),
        ("x", "no_colon", r"fn: got 'no_colon', expected a function or a 'module:function' path"),
        ("reference", lambda: None, r"name: backend 'reference' is already registered; pass replace=True"),
    ],
    ids=["auto", "empty", "bad-path", "taken"],
)
def test_register_backend_rejects_bad_registrations(registry, name, fn, message):
    with pytest.raises(ValueError, match=message):
        register_backend(name, fn)


def test_non_reference_backends_need_a_registered_cell(registry):
    register_backend("by-name", lambda *a, **k: None)
    Wx = torch.randn(2, 3, 2, 1, 4)
    R, b = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4)
    with pytest.raises(
        ValueError, match=r"cell: backend 'by-name' loads cells by name; got an unregistered Cell 'mgu'"
    ):
        tunekit.rnn(Wx, R, b, cell=MGU, backend="by-name")


def test_rnn_is_differentiable_in_every_input():
    Wx, R, b = (t.requires_grad_() for t in lstm_inputs())
    states = torch.randn(2, 3, 1, 2, 6, dtype=torch.float64, requires_grad=True)
    all_states, last = tunekit.rnn(Wx, R, b, states, cell="lstm")
    (all_states.sum() + last.square().sum()).backward()
    for name, tensor in (("Wx", Wx), ("R", R), ("b", b), ("states", states)):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name


def test_readme_python_api_example_runs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    start = section.index("```python\n") + len("```python\n")
    example = section[start : section.index("\n```", start)]
    namespace: dict = {}
    exec(compile(example, "README.md (Python API)", "exec"), namespace)
    assert namespace["out"].shape == (4, 32, 144) and namespace["h_n"].shape == (1, 4, 144)

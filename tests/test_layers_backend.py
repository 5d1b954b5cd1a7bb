"""Which backend a layer runs (tunekit.layer_backend): decided once per shape, explained, honest.

Specs: on a CPU "auto" is the reference; on a GPU (faked here: a CUDA device with the h100
profile, nothing launched) it is the fastest predicted configuration among the kernel families
that run there, tier "predicted", for the problem's direction ("both" when autograd records,
"forward" under no_grad); it falls back to the reference only where no kernel can take the shape
(float64, an unregistered cell, no configuration fits) and says why; a backend named explicitly
that cannot serve the shape raises with the explanation; tuning runs once per shape, not per
forward; a layer on triton-fused (Triton's interpreter) equals the reference layer.
"""

from __future__ import annotations

import contextlib
import re

import pytest
import torch

import tunekit
import tunekit.tuning
from tunekit import layer_backend
from tunekit.api import BackendUnavailableError, register_backend
from tunekit.cells import get_cell
from tunekit.cells.elman_relu import ELMAN_RELU
from tunekit.hardware import load_profile
from tunekit.problem import FAMILIES

CUDA = torch.device("cuda", 0)  # only its type is read: nothing runs on it here


@pytest.fixture(autouse=True)
def empty_state(monkeypatch, tmp_path):
    """Each test starts with an empty tuning database and no decision taken in this process."""
    monkeypatch.setenv("TUNEKIT_DB", str(tmp_path / "tuning.sqlite"))
    monkeypatch.setattr(layer_backend, "_TUNED", {})
    monkeypatch.setattr(layer_backend, "_DECIDED", {})


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device whose detected profile is the h100's (no GPU needed to decide)."""
    monkeypatch.setattr(layer_backend, "_detected", lambda index: load_profile("h100"))


@pytest.fixture
def tune_calls(monkeypatch) -> list:
    """Every tune() the decisions make, from an empty process-wide cache."""
    calls: list = []
    real = tunekit.tuning.tune

    def counting(problem, gpu, **kwargs):
        calls.append((problem, kwargs.get("backend")))
        return real(problem, gpu, **kwargs)

    monkeypatch.setattr(tunekit.tuning, "tune", counting)
    return calls


def forget_this_process(monkeypatch):
    """What a new process knows: nothing tuned or decided (the database persists)."""
    monkeypatch.setattr(layer_backend, "_TUNED", {})
    monkeypatch.setattr(layer_backend, "_DECIDED", {})


def choose(requested="auto", config=None, cell="lstm", *, batch=16, heads=2, head_dim=64,
           dtype=torch.bfloat16, device=CUDA, direction="both"):  # fmt: skip
    return layer_backend.choose(
        requested, config, get_cell(cell) if isinstance(cell, str) else cell,
        batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, device=device, direction=direction,
    )  # fmt: skip


def test_auto_on_a_cpu_is_the_reference_and_says_so():
    decision = choose(device=torch.device("cpu"))
    assert (decision.backend, decision.config, decision.tier) == ("reference", None, None)
    assert decision.reason == "tensors on cpu: the tuned kernels need a CUDA GPU"


@pytest.mark.parametrize("direction", ["both", "forward"])
def test_auto_on_a_gpu_is_the_fastest_predicted_runnable_configuration(fake_gpu, tune_calls, direction):
    decision = choose(direction=direction)
    problem = tunekit.Problem("lstm", 16, 2, 64, "bfloat16", direction)
    runnable = [
        f for f in FAMILIES if layer_backend._why_not(f, CUDA) is None
    ]  # as registered in tunekit.api
    assert "triton-fused" in runnable
    expected = []  # the same problem tuned directly, family by family
    for family in runnable:
        with contextlib.suppress(tunekit.tuning.NoFeasibleConfig):
            expected.append(tunekit.tuning.tune(problem, "h100", backend=family))
    best = min(expected, key=lambda result: result.predicted["time_us_per_step"])
    assert (decision.backend, decision.config, decision.tier) == (best.backend, best.config, "predicted")
    assert decision.config.problem.direction == direction and decision.profile == "h100-sxm5-80gb"
    assert decision.predicted_us_per_step == pytest.approx(best.predicted["time_us_per_step"])
    assert "h100-sxm5-80gb" in decision.reason and "analytic cost model" in decision.reason
    for family in set(FAMILIES) - set(runnable):  # planned families not registered yet
        assert (
            "not available here: " in decision.reason
            and f"backend {family!r} is known but" in decision.reason
        )
    assert f"{decision.config.name} (trust: predicted, " in decision.describe()


def test_tuning_runs_once_per_shape(fake_gpu, tune_calls):
    first = choose()
    families = len(tune_calls)  # one tune per runnable family
    assert families >= 1 and choose() == first and len(tune_calls) == families
    choose(batch=8)
    assert len(tune_calls) == 2 * families


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"dtype": torch.float64}, r"dtype torch.float64: the tuned kernels take float32, float16, bfloat16"),
        ({"cell": ELMAN_RELU}, r"cell 'elman_relu' is not registered \(the kernel backends load cells"),
        ({"head_dim": 4096, "heads": 1}, r"no feasible configuration for lstm .* on h100-sxm5-80gb \(tried "
                                         r"triton-fused\)"),
    ],
    ids=["float64", "unregistered-cell", "nothing-fits"],
)  # fmt: skip
def test_auto_falls_back_to_the_reference_only_where_no_kernel_fits_and_says_why(
    fake_gpu, monkeypatch, kwargs, reason
):
    # a GPU without cuda-python: only triton-fused can run (cuda-alternating fits any head dim)
    real = layer_backend._why_not
    monkeypatch.setattr(
        layer_backend, "_why_not", lambda b, d: "no cuda-python" if b.startswith("cuda-") else real(b, d)
    )
    decision = choose(**kwargs)
    assert decision.backend == "reference" and decision.config is None
    assert decision.reason.startswith("auto fell back to the reference: ")
    assert re.search(reason, decision.reason), decision.reason


def test_a_named_backend_that_cannot_serve_the_shape_raises_with_the_explanation(fake_gpu):
    with pytest.raises(ValueError, match=r"backend 'triton-fused' cannot serve this layer: no feasible "
                       r"configuration(.|\n)*shared memory"):  # fmt: skip
        choose("triton-fused", head_dim=4096, heads=1)
    with pytest.raises(
        ValueError, match=r"backend 'triton-fused' cannot serve this layer: dtype torch.float64"
    ):
        choose("triton-fused", dtype=torch.float64)


def test_a_named_backend_that_cannot_run_here_raises(monkeypatch):
    monkeypatch.setattr(tunekit.api, "_BACKENDS", dict(tunekit.api._BACKENDS))  # undone after the test
    register_backend("tpu-only", "tunekit.reference:rnn", available=lambda device: "needs a TPU")
    with pytest.raises(
        BackendUnavailableError, match=r"backend 'tpu-only' is known but unavailable here: needs a TPU"
    ):
        choose("tpu-only", device=torch.device("cpu"))


def test_a_given_configuration_runs_as_given_with_tier_given(fake_gpu, tune_calls):
    config = {"block_b": 16, "num_warps": 4, "num_stages": 1}
    decision = choose("triton-fused", config)
    assert (decision.backend, decision.config, decision.tier) == ("triton-fused", config, "given")
    assert tune_calls == []


def test_a_registered_backend_outside_the_tuned_families_runs_untuned(monkeypatch):
    monkeypatch.setattr(tunekit.api, "_BACKENDS", dict(tunekit.api._BACKENDS))
    register_backend("mine", "tunekit.reference:rnn")
    decision = choose("mine", device=torch.device("cpu"))
    assert (decision.backend, decision.config) == ("mine", None)
    layer = tunekit.GRU(3, 8, backend="mine", dtype=torch.float64)
    reference = tunekit.GRU(3, 8, backend="reference", dtype=torch.float64)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[0], reference(x)[0], rtol=0, atol=0)


def test_a_layer_on_triton_fused_equals_the_reference_layer_and_tunes_once(tune_calls):
    """In Triton's interpreter (tests/conftest.py), tuned for the a100 profile: 2 heads of 16, both
    directions, variable lengths; forward, final states and every parameter's gradient."""
    torch.manual_seed(0)
    fused = tunekit.LSTM(5, 32, bidirectional=True, num_heads=2, backend="triton-fused")
    reference = tunekit.LSTM(5, 32, bidirectional=True, num_heads=2, backend="reference")
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(3, 2, 5)
    outputs = [layer(x, lengths=[3, 2]) for layer in (fused, reference)]
    (out_f, (h_f, c_f)), (out_r, (h_r, c_r)) = outputs
    for name, a, e in (("output", out_f, out_r), ("h_n", h_f, h_r), ("c_n", c_f, c_r)):
        # the tuned fp32 configuration runs its products on tf32 tensor cores (10-bit mantissas)
        torch.testing.assert_close(a, e, rtol=5e-3, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    weights = torch.randn_like(out_r)
    for out, (h_n, _) in outputs:
        ((weights * out).sum() + h_n.sum()).backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(fused.get_parameter(name).grad, p.grad, rtol=5e-3, atol=1e-4, msg=name)
    fused(x, lengths=[1, 2])  # the same shape again: decided already
    assert len(tune_calls) == 1 and tune_calls[0][0].direction == "both"
    text = fused.describe()
    assert (
        "triton-fused lstm-both-tritonfused-D16-N2-B2-fp32-a100-sxm4-80gb" in text
        and "trust: predicted" in text
    )
    assert "Triton's interpreter, tuned for a100-sxm4-80gb" in text
    assert "-> triton-fused lstm-both-tritonfused-D16" in repr(fused)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_the_local_gpu_runs_a_tuned_kernel_equal_to_the_reference():
    import triton

    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = False
        torch.manual_seed(0)
        layer = tunekit.LSTM(24, 96, 2, batch_first=True, bidirectional=True, num_heads=3, device="cuda")
        reference = tunekit.LSTM(24, 96, 2, batch_first=True, bidirectional=True, num_heads=3,
                                 backend="reference", dtype=torch.float64)  # fmt: skip
        reference.load_state_dict(layer.state_dict())
        x = torch.randn(16, 33, 24, device="cuda")
        lengths = torch.randint(1, 34, (16,)).tolist()
        out, (h_n, _) = layer(x, lengths=lengths)
        decision = layer._decisions[layer._last_key]
        assert decision.backend != "reference" and decision.tier == "predicted", layer.describe()
        expected, (h_expected, _) = reference(x.double().cpu(), lengths=lengths)
        torch.testing.assert_close(out.double().cpu(), expected, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(h_n.double().cpu(), h_expected, rtol=1e-3, atol=1e-4)
        with torch.no_grad():
            layer(x)
        assert "forward: " in layer.describe()


def test_a_decision_is_stored_and_the_next_process_reads_it_without_tuning(fake_gpu, tune_calls, monkeypatch):
    first = choose()
    assert first.tier == "predicted" and "analytic cost model" in first.reason and len(tune_calls) >= 1
    forget_this_process(monkeypatch)
    tune_calls.clear()
    again = choose()
    assert tune_calls == []  # looked up, not tuned
    assert (again.backend, again.config, again.tier) == (first.backend, first.config, "predicted")
    assert again.reason.startswith("the tuning database's best predicted record on h100-sxm5-80gb (recorded ")


def test_a_measured_record_in_the_database_beats_the_models_pick(fake_gpu, tune_calls, monkeypatch):
    from dbcases import measured

    from tunekit.cost import active_constants
    from tunekit.db import TuningDB, predicted_record

    problem = tunekit.Problem("lstm", 16, 2, 64, "bfloat16", "both")
    result = tunekit.tuning.tune(problem, "h100", backend="triton-fused", top=3)
    digest = active_constants().digest
    slowest = predicted_record(result.candidates[-1], result.gpu, len(result.candidates) - 1, digest)
    with TuningDB() as db:
        db.record_run([measured(slowest, [5.0, 5.1, 4.9])], "test")
    tune_calls.clear()
    decision = choose()
    assert tune_calls == [] and decision.tier == "measured"
    assert decision.config == result.candidates[-1].config  # timed beats predicted, whatever the rank
    assert "the tuning database's best measured record" in decision.describe()


def test_an_unreadable_database_never_stops_a_layer(fake_gpu, tune_calls, monkeypatch, tmp_path):
    monkeypatch.setenv("TUNEKIT_DB", str(tmp_path))  # a directory, not a database file
    decision = choose()
    assert decision.tier == "predicted" and "analytic cost model" in decision.reason
    assert "tuning database" in decision.reason

"""``tunekit generate``: a triton-fused package that runs without tunekit, deterministic, written safely.

The numeric tests generate a package, run it in a child process where importing tunekit fails
(Triton's interpreter), and compare with the float64 reference computed here. Sizes are odd on
purpose: B=3 below the 16-row batch tile (masked rows), D=20/24 padded to 32 (masked lanes), 2 heads.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from generate_support import assert_close, make_case, reference, run_without_tunekit

import tunekit
from tunekit.generate import choose, generatable_families, generate, package_files
from tunekit.generate_package import MANIFEST, PackageError, load, package_name
from tunekit.problem import Problem
from tunekit.tuning import NoFeasibleConfig

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# (cell, dtype, direction, D): training in fp32 (tight bounds) and an inference-only bf16 package
# (the interpreter's bf16 dot path)
NUMERIC = [
    ("gru", "float32", "both", 20),
    ("slstm", "bfloat16", "forward", 24),
]


@pytest.fixture(autouse=True)
def tuning_db(tmp_path, monkeypatch):
    """Lookups go to an empty database of the test's own, never the user's cache."""
    path = tmp_path / "tuning.sqlite"
    monkeypatch.setenv("TUNEKIT_DB", str(path))
    return path


def _problem(cell="lstm", dtype="float32", direction="forward", head_dim=24, heads=2, batch=3) -> Problem:
    return Problem(cell, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, direction=direction)


def _tree(folder) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.parametrize(
    "cell, dtype, direction, head_dim", NUMERIC, ids=[f"{c}-{t}-{d}-D{h}" for c, t, d, h in NUMERIC]
)
def test_package_runs_without_tunekit_and_matches_the_reference(tmp_path, cell, dtype, direction, head_dim):
    out = tmp_path / "kernels"
    generated = generate(_problem(cell, dtype, direction, head_dim), "a100", out, backend="triton-fused")
    assert generated.choice.family == "triton-fused"
    case = make_case(cell, B=3, T=5, N=2, D=head_dim, dtype=DTYPES[dtype])
    backward = direction == "both"
    expected = reference(case, backward)

    result = run_without_tunekit(out, case, backward, tmp_path)

    assert result["modules"] == [] and result["name"] == generated.choice.config.name
    assert result["tier"] == generated.choice.tier == "predicted"
    torch_dtype = DTYPES[dtype]
    assert result["states"].dtype == torch_dtype
    tol = "tf32" if generated.choice.config.params.get("tf32") else torch_dtype  # fp32 on tf32 tensor cores
    assert_close(result["states"], expected["states"], tol, "all states")
    assert_close(result["last"], expected["last"], tol, "final states")
    if backward:
        for what, grad, grad_ref in zip(
            ("dWx", "dR", "db", "dstates0"), result["grads"], expected["grads"], strict=True
        ):
            assert grad is not None and grad.dtype == torch_dtype, what
            assert_close(grad, grad_ref, tol, what)
    else:
        assert "direction 'forward'" in result["refused"] and "--direction both" in result["refused"]
    assert result["layer_shape"] == (len(case["inputs"][3]), 2, 3, 2, head_dim)


def test_generating_twice_gives_identical_bytes(tmp_path):
    problem = _problem("lstm", "float16", "both", 24)
    first = generate(problem, "h100", tmp_path / "a", backend="triton-fused")
    second = generate(problem, "h100", tmp_path / "b", backend="triton-fused")
    assert first.files == second.files
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert package_files(choose(problem, "h100", backend="triton-fused")) == _tree(
        tmp_path / "a"
    )  # and in memory too
    names = set(_tree(tmp_path / "a"))
    assert names == {
        "README.md", "__init__.py", "_config.py", "_layer.py", "_runtime.py",
        "fused_backward.py", "fused_forward.py", MANIFEST,
    }  # fmt: skip
    readme = (tmp_path / "a" / "README.md").read_text()
    for fact in (first.choice.config.name, "h100-sxm5-80gb", "sm_90", "Tier: **predicted**", "triton 3."):
        assert fact in readme
    assert "tunekit generate --gpu h100-sxm5-80gb --cell lstm --head-dim 24 --heads 2 --batch 3" in readme


def test_package_sources_never_import_tunekit(tmp_path):
    generate(_problem("elman", "float32", "both", 20), "a100", tmp_path / "pkg", backend="triton-fused")
    for path in (tmp_path / "pkg").glob("*.py"):
        text = path.read_text()
        assert "import tunekit" not in text and "from tunekit" not in text, path.name


def test_package_name_comes_from_canonical_name_characters_only():
    assert package_name("lstm-fwd-tritonfused-D24-N2-B3-fp32-a100-sxm4-80gb-bb16-w4-s1-dp32") == (
        "tk_lstm_fwd_tritonfused_d24_n2_b3_fp32_a100_sxm4_80gb_bb16_w4_s1_dp32"
    )
    for bad in ("../evil", "a b", "x/y", "", "-lead", "ünï"):
        with pytest.raises(ValueError, match="canonical configuration name"):
            package_name(bad)


def test_a_non_empty_folder_that_is_not_a_package_is_refused_untouched(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(PackageError, match="not empty and not a tunekit package"):
        generate(_problem(), "a100", out, backend="triton-fused")
    assert _tree(out) == {"notes.txt": b"keep me"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary sibling left


def test_a_previous_package_is_replaced_but_not_one_holding_foreign_files(tmp_path):
    out = tmp_path / "pkg"
    generate(_problem(head_dim=24), "a100", out, backend="triton-fused")
    (out / "__pycache__").mkdir()
    (out / "__pycache__" / "_config.cpython-311.pyc").write_bytes(b"\0")  # what importing leaves
    replaced = generate(_problem(head_dim=20), "a100", out, backend="triton-fused")
    assert replaced.replaced and "D20" in replaced.choice.config.name
    assert _tree(out) == package_files(replaced.choice)
    assert not (out / "__pycache__").exists()

    (out / "my_helper.py").write_text("x = 1\n")
    with pytest.raises(PackageError, match=r"files it did not write \(my_helper.py\)"):
        generate(_problem(head_dim=24), "a100", out, backend="triton-fused")
    assert (out / "my_helper.py").read_text() == "x = 1\n" and "D20" in (out / "_config.py").read_text()


def test_a_crash_while_writing_keeps_the_previous_package_whole(tmp_path, monkeypatch):
    import tunekit.generate_tree as tree

    out = tmp_path / "pkg"
    generate(_problem(head_dim=24), "a100", out, backend="triton-fused")
    before = _tree(out)
    real_open = open
    written = []

    def crash_on_third_file(path, mode="r", *args, **kwargs):
        if "w" in mode:
            written.append(path)
            if len(written) == 3:
                raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(tree, "open", crash_on_third_file, raising=False)
    with pytest.raises(OSError, match="No space left"):
        generate(_problem(head_dim=20), "a100", out, backend="triton-fused")
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # the staging folder is gone


def test_tunekit_load_runs_the_package_and_refuses_an_edited_one(tmp_path):
    out = tmp_path / "my-kernels"  # not an identifier: load() does not need one
    generate(_problem("lstm", "float32", "forward", 24), "a100", out, backend="triton-fused")
    package = tunekit.load(out)
    assert tunekit.load(out) is package
    assert package.FAMILY == "triton-fused" and package.PROBLEM["head_dim"] == 24
    case = make_case("lstm", B=3, T=4, N=2, D=24, dtype=torch.float32, seed=3)
    with torch.no_grad():
        states, last = package.rnn(*case["inputs"])
    expected = reference(case, backward=False)
    assert_close(states, expected["states"], "tf32", "all states")  # the tuned fp32 form: tf32 products
    assert_close(last, expected["last"], "tf32", "final states")
    with pytest.raises(ValueError, match=r"Wx: got shape \(3, 4, 4, 2, 20\).*regenerate"):
        package.rnn(torch.zeros(3, 4, 4, 2, 20), *case["inputs"][1:3])
    with pytest.raises(ValueError, match="dtype torch.float32"):
        package.rnn(*[x.double() for x in case["inputs"]])

    runtime = out / "_runtime.py"
    runtime.write_text(runtime.read_text() + "\n# edited\n")
    with pytest.raises(PackageError, match=r"_runtime.py: changed since `tunekit generate` wrote it"):
        load(out)
    with pytest.raises(PackageError, match="no tunekit_package.json"):
        load(tmp_path)


def test_bad_requests_say_what_is_wrong():
    with pytest.raises(ValueError, match="direction: got 'backward'.*forward kernel"):
        choose(_problem(direction="backward"), "a100")
    with pytest.raises(ValueError, match="backend: got 'cuda'"):
        choose(_problem(), "a100", backend="cuda")
    with pytest.raises(NoFeasibleConfig, match="triton-fused"):
        # R of one head alone (4 x 512 x 512 fp32, 4 MiB) exceeds the A100's shared memory
        choose(_problem("lstm", "float32", "both", 512), "a100", backend="triton-fused")


def test_a_family_that_cannot_be_packaged_is_named_not_silently_replaced(monkeypatch):
    import tunekit.kernels.cuda_fused as fused

    assert set(generatable_families()) == {"triton-fused", "cuda-fused", "cuda-alternating"}
    monkeypatch.delattr(fused, "package_runtime")
    assert "cuda-fused" not in generatable_families()
    with pytest.raises(ValueError, match="cuda-fused kernels exist but cannot be packaged"):
        choose(_problem(), "a100", backend="cuda-fused")
    assert "cuda-fused kernels exist but cannot be packaged" in choose(_problem(), "a100").reason


def test_the_cli_writes_a_package_and_reports_errors_in_one_line(tmp_path):
    from click.testing import CliRunner

    from tunekit.cli import main

    runner = CliRunner()
    args = (
        "generate --gpu a100 --backend triton-fused --cell elman --head-dim 20 --heads 2 --batch 3 "
        "--dtype float32 --direction both"
    )
    args = args.split()
    done = runner.invoke(main, [*args, "--out", str(tmp_path / "pkg")])
    assert done.exit_code == 0, done.output
    assert "elman-both-tritonfused-D20-N2-B3-fp32-a100-sxm4-80gb" in done.output
    assert (tmp_path / "pkg" / MANIFEST).is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    done = runner.invoke(main, [*args, "--out", str(tmp_path / "other")])
    assert done.exit_code == 2 and done.output.count("\n") == 1 and "not a tunekit package" in done.output
    infeasible = [*args[:-4], "--dtype", "float32", "--direction", "both", "--head-dim", "4096"]
    done = runner.invoke(main, [*infeasible, "--backend", "triton-fused", "--out", str(tmp_path / "none")])
    assert done.exit_code == 1 and "no feasible configuration" in done.output
    assert not (tmp_path / "none").exists()


def test_generated_python_is_lint_clean(tmp_path):
    generate(_problem("lstm", "float16", "both", 24), "a100", tmp_path / "pkg", backend="triton-fused")
    lint = [
        "-m",
        "ruff",
        "check",
        "--no-cache",
        "--select",
        "E,F,W",
        "--ignore",
        "E501",
    ]  # long data lines allowed
    done = subprocess.run(  # ruff is in the test extra
        [sys.executable, *lint, str(tmp_path / "pkg")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_measured_record_in_the_database_is_what_gets_packaged(tmp_path, tuning_db):
    from dbcases import measured, ranked

    from tunekit.db import TuningDB

    problem = _problem("gru", "float32", "forward", 24)
    candidates = ranked(problem, "a100", backend="triton-fused")
    assert (
        choose(problem, "a100", backend="triton-fused").config == candidates[0][0]
    )  # the model's best, tier predicted
    slower_in_the_model, record = candidates[1]
    with TuningDB(tuning_db) as db:
        db.record_run([r for _, r in candidates], "test")
        db.write([measured(record, [3.0, 3.1, 2.9]), measured(candidates[0][1], [5.0, 5.2, 5.1])])
    generated = generate(problem, "a100", tmp_path / "pkg")  # auto: a measured record beats any model
    assert generated.choice.config == slower_in_the_model and generated.choice.tier == "measured"
    readme = (tmp_path / "pkg" / "README.md").read_text()
    assert "Tier: **measured**" in readme and "median 3 µs per step over 3 runs" in readme
    assert tunekit.load(tmp_path / "pkg").TIER == "measured"

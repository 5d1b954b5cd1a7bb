"""Measured tuning on the CPU with a runner that replays recorded timings (Kernel Tuner's simulation
mode): the winner, noise, wrong kernels, interruptions and resuming, and the no-GPU path."""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbcases import SMALL, measured, ranked

from tunekit.cli import main
from tunekit.db import TuningDB, choose_measured
from tunekit.db.exchange import dumps
from tunekit.db.tuning_run import RunOptions, run_tuning
from tunekit.measure import MeasureSettings, SimulatedRunner, measure

SETTINGS = MeasureSettings(steps=64, warmup=2, repeats=9, check_steps=4)


def recording(
    pairs, medians: dict[int, float], failed: tuple[int, ...] = (), spread: float = 0.0
) -> SimulatedRunner:
    """A runner replaying, for candidate i, samples around ``medians[i]`` (default 50 + i µs)."""
    recorded = []
    for i, (_, record) in enumerate(pairs):
        m = medians.get(i, 50.0 + i)
        samples = [m * (1 + spread * (k - 4) / 4) for k in range(9)]
        recorded.append(measured(record, samples, passed=i not in failed))
    return SimulatedRunner.from_records(recorded)


@pytest.fixture(scope="module")
def pairs():
    return ranked(top=6)


def test_the_winner_is_the_fastest_median_and_every_candidate_is_checked_before_it_is_timed(pairs):
    runner = recording(pairs, {3: 20.0})
    outcome = measure(pairs, runner, None, SETTINGS)
    assert outcome.winner.name == pairs[3][0].name and outcome.winner.tier == "measured"
    assert [r.median_us for r in outcome.records][3] == pytest.approx(20.0)
    assert all(len(r.samples_us) == SETTINGS.repeats for r in outcome.records)
    expected = [(kind, c.name) for c, _ in pairs for kind in ("check", "time")]
    assert runner.calls == expected
    assert dict(outcome.records[0].measure) == {**SETTINGS.as_dict(), "runner": "simulated"}


def test_within_the_noise_band_the_model_order_decides_then_the_name(pairs):
    # candidate 4 is 0.5% faster than candidate 1: noise; the model ranks 1 above 4
    outcome = measure(pairs, recording(pairs, {1: 20.1, 4: 20.0}), None, SETTINGS)
    assert outcome.winner.name == pairs[1][0].name
    shuffled = list(pairs)
    random.Random(3).shuffle(shuffled)
    again = measure(shuffled, recording(pairs, {1: 20.1, 4: 20.0}), None, SETTINGS)
    assert again.winner.name == outcome.winner.name  # the order given does not matter
    # 3% apart is beyond the band of samples this tight: the faster one wins
    assert (
        measure(pairs, recording(pairs, {1: 20.6, 4: 20.0}), None, SETTINGS).winner.name == pairs[4][0].name
    )
    # equal medians and equal predictions: the canonical name decides
    a, b = (replace(r, predicted={**r.predicted, "time_us_per_step": 1.0}) for _, r in pairs[:2])
    same = [measured(a, [7.0] * 5), measured(b, [7.0] * 5)]
    assert choose_measured(same).name == min(a.name, b.name) == choose_measured(same[::-1]).name


def test_a_noisy_runner_gives_the_same_winner_for_every_seed(pairs):
    # true medians: candidate 0 (the model's best) at 100.8 µs, candidate 2 at 100 µs, the rest slower;
    # each sample has +-6% noise
    base = recording(pairs, {0: 100.8, 2: 100.0, 1: 140.0, 3: 150.0, 4: 160.0, 5: 170.0}).recording
    settings = replace(SETTINGS, repeats=31)
    winners, naive = set(), set()
    for seed in range(12):
        outcome = measure(pairs, SimulatedRunner(base, noise=0.06, seed=seed), None, settings)
        winners.add(outcome.winner.name)
        naive.add(min(outcome.records, key=lambda r: r.median_us).name)
    assert winners == {pairs[0][0].name}  # deterministic under noise: the band, then the model's order
    assert len(naive) == 2  # the plain fastest median flips between the two with the seed


def test_a_wrong_kernel_is_recorded_failed_never_timed_and_never_chosen(pairs):
    runner = recording(pairs, {0: 1.0}, failed=(0,))  # the fastest recording computes wrong numbers
    missing = SimulatedRunner({k: v for k, v in runner.recording.items() if k != pairs[5][0].name})
    outcome = measure(pairs, missing, None, SETTINGS)
    by_name = {r.name: r for r in outcome.records}
    wrong = by_name[pairs[0][0].name]
    assert wrong.status == "failed" and wrong.samples_us == () and "wrong numbers" in wrong.note
    assert ("time", pairs[0][0].name) not in missing.calls
    absent = by_name[pairs[5][0].name]
    assert absent.status == "failed" and "not in the recording" in absent.numerics["detail"]
    assert outcome.winner.name == pairs[1][0].name
    assert set(outcome.failed) == {pairs[0][0].name, pairs[5][0].name}


def test_a_candidate_whose_timing_raises_is_failed(pairs):
    @dataclass
    class Crashing(SimulatedRunner):
        def time(self, config, settings):
            if config.name == pairs[2][0].name:
                raise RuntimeError("an illegal memory access was encountered")
            return super().time(config, settings)

    outcome = measure(pairs, Crashing(recording(pairs, {2: 1.0}).recording), None, SETTINGS)
    crashed = outcome.records[2]
    assert crashed.status == "failed" and "illegal memory access" in crashed.note
    assert outcome.winner.name != crashed.name


@dataclass
class Interrupted(SimulatedRunner):
    """Ctrl-C arrives while the ``after``-th candidate is being timed."""

    after: int = 3

    def time(self, config, settings):
        if sum(kind == "time" for kind, _ in self.calls) == self.after - 1:
            self.calls.append(("interrupted", config.name))
            raise KeyboardInterrupt
        return super().time(config, settings)


def test_an_interrupted_run_resumes_from_the_database_without_timing_anything_twice(pairs, tmp_path: Path):
    recorded = recording(pairs, {4: 10.0}).recording
    with TuningDB(tmp_path / "t.sqlite") as db:
        first = Interrupted(recorded)
        with pytest.raises(KeyboardInterrupt):
            measure(pairs, first, db, SETTINGS)
        assert {r.name for r in db.records(tier="measured")} == {c.name for c, _ in pairs[:2]}
        second = SimulatedRunner(recorded)
        outcome = measure(pairs, second, db, SETTINGS)
        assert outcome.reused == tuple(c.name for c, _ in pairs[:2])
        assert outcome.timed == tuple(c.name for c, _ in pairs[2:])
        timed_twice = {n for kind, n in first.calls if kind == "time"} & {n for kind, n in second.calls}
        assert timed_twice == set()
        third = SimulatedRunner(recorded)
        assert measure(pairs, third, db, SETTINGS).timed == () and third.calls == []  # all done
        # asking for other settings measures again
        assert len(measure(pairs, SimulatedRunner(recorded), db, replace(SETTINGS, repeats=5)).timed) == 6
    uninterrupted = measure(pairs, SimulatedRunner(recorded), None, SETTINGS)
    assert outcome.winner.name == uninterrupted.winner.name == pairs[4][0].name


@pytest.mark.parametrize(
    ("field", "value"), [("steps", 0), ("repeats", -1), ("warmup", -1), ("check_steps", True)]
)
def test_bad_measure_settings_are_value_errors(field: str, value):
    with pytest.raises(ValueError, match=f"{field}: got"):
        MeasureSettings(**{field: value})


def test_without_a_gpu_measuring_says_so_in_one_line_and_ranks_instead(monkeypatch, tmp_path: Path):
    monkeypatch.setattr("tunekit.measure.gpu_available", lambda: False)
    report = run_tuning(SMALL, "a100", db_path=tmp_path / "t.sqlite", options=RunOptions(measure=True))
    assert report.measured is None and report.choice.tier == "predicted" and report.choice.source == "fresh"
    (line,) = report.notes
    assert line.startswith("measuring needs a CUDA GPU") and "ranked with the cost model instead" in line
    result = CliRunner().invoke(
        main,
        [
            "tune",
            "--gpu",
            "a100",
            "--cell",
            "lstm",
            "--head-dim",
            "48",
            "--measure",
            "--db",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "measuring needs a CUDA GPU" in result.output and "Choice: fresh predicted" in result.output


def _export(tmp_path: Path, pairs, medians: dict[int, float]) -> Path:
    path = tmp_path / "recorded.json"
    path.write_text(dumps(list(recording(pairs, medians).recording.values())))
    return path


def test_tune_measure_simulate_records_resumes_and_reads_back_the_winner(tmp_path: Path, pairs):
    # the recording holds every family's top candidates, as a GPU run of `tune --measure` would
    per_family = [p for family in ("triton-fused", "cuda-alternating", "cuda-fused")
                  for p in ranked(backend=family, top=3)]  # fmt: skip
    families = [c.family for c, _ in per_family]
    fastest = families.index("cuda-alternating") + 1  # its second candidate: not the model's favourite
    recorded = _export(tmp_path, per_family, {fastest: 5.0})
    db = tmp_path / "t.sqlite"
    args = ["tune", "--gpu", "a100", "--cell", "lstm", "--head-dim", "48", "--heads", "3", "--batch", "5"]
    args += ["--simulate", str(recorded), "--repeats", "9", "--db", str(db)]
    first = CliRunner().invoke(main, [*args, "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert (data["choice"]["source"], data["choice"]["tier"]) == ("fresh", "measured")
    assert data["config_name"] == per_family[fastest][0].name == data["measure"]["winner"]
    assert len(data["measure"]["records"]) == len(per_family) and len(set(families)) == 3
    assert not any(r["reused"] for r in data["measure"]["records"])
    again = CliRunner().invoke(main, args)  # the same command: everything is in the database already
    assert again.exit_code == 0, again.output
    assert "Choice: stored measured record from the tuning database" in again.output
    assert again.output.count("(from the database)") == len(per_family) and "timed now" not in again.output
    plain = CliRunner().invoke(main, [a for a in args if a not in ("--simulate", str(recorded))])
    assert "Choice: stored measured record" in plain.output  # a plain tune reads the measurement back
    plain = json.loads(CliRunner().invoke(main, [*args[:11], "--db", str(db), "--json"]).stdout)
    assert plain["config_name"] == per_family[fastest][0].name and plain["choice"]["source"] == "stored"


def test_a_bad_recording_is_one_error_line(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "tunekit-tuning-db", "version": 7, "records": []}')
    args = ["tune", "--gpu", "a100", "--cell", "lstm", "--head-dim", "48", "--simulate", str(bad)]
    result = CliRunner().invoke(main, [*args, "--db", str(tmp_path / "t.sqlite")])
    assert (
        result.exit_code == 2
        and result.stderr.startswith("Error: --simulate:")
        and "version 7" in result.stderr
    )


def test_median_quantiles_are_the_samples(pairs):
    record = measured(pairs[0][1], [3.0, 1.0, 2.0, 5.0, 4.0])
    assert record.quantiles() == {"min": 1.0, "q25": 2.0, "median": 3.0, "q75": 4.0, "max": 5.0}
    assert record.median_us == statistics.median([3.0, 1.0, 2.0, 5.0, 4.0])


@pytest.mark.gpu
def test_cuda_events_time_a_triton_candidate_on_the_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    import triton

    from tunekit.hardware import detect_profile
    from tunekit.measure import CudaEventRunner
    from tunekit.problem import Problem
    from tunekit.tuning import tune

    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = False
        problem = Problem("lstm", batch=16, heads=2, head_dim=64, direction="both")
        config = tune(problem, detect_profile(), backend="triton-fused", top=1).config
        runner = CudaEventRunner()
        assert "triton-fused" in runner.families()
        assert runner.check(config, SETTINGS).passed
        samples = runner.time(config, SETTINGS)
    assert len(samples) == SETTINGS.repeats and all(s > 0 for s in samples)

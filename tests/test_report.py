"""Reports: one HTML page per tuning run, every linked image a real PNG, every string escaped."""

from __future__ import annotations

import json
import math
import struct
from html.parser import HTMLParser

import pytest

from tunekit import report
from tunekit.problem import Problem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert('x')</script>&"


@pytest.fixture(autouse=True)
def tuning_db(tmp_path, monkeypatch):
    """`tunekit tune` records into a database of the test's own, never the user's cache."""
    path = tmp_path / "tuning.sqlite"
    monkeypatch.setenv("TUNEKIT_DB", str(path))
    return path


class _Links(HTMLParser):
    """Collects every img src and the text of every script element."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self.scripts += tag == "script"


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk; asserts the PNG signature and chunk layout."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def _links(page) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def lstm_run():
    """LSTM training at D=768 on an H100: triton-fused has nothing (an explanation), the CUDA
    families have candidates, and two timed configurations (one with a hostile name)."""
    problem = Problem("lstm", batch=16, heads=1, head_dim=768, direction="both")
    measured = [
        report.Measurement("lstm-both-cudafused-x", "cuda-fused", 4.2, 5.1),
        report.Measurement(HOSTILE, "cuda-alternating", 25.0, 21.5),
    ]
    return report.collect(problem, "h100", measurements=measured)


@pytest.fixture(scope="module")
def lstm_page(lstm_run, tmp_path_factory):
    """The run's page, written once (rendering the plots takes seconds)."""
    return report.write(lstm_run, tmp_path_factory.mktemp("reports"))


def test_every_linked_image_is_a_non_empty_png(lstm_page):
    page = lstm_page
    assert page.parent.name == "lstm-both-auto-D768-N1-B16-bf16-h100-sxm5-80gb" and page.name == "index.html"
    links = _links(page)
    expected = ["candidates.png", "cost_terms.png", "feasible.png", "measured.png", "slack.png"]
    assert sorted(links.images) == expected
    for name in links.images:
        data = (page.parent / name).read_bytes()
        width, height = _png_size(data)
        assert width > 100 and height > 100 and len(data) > 2000, name
    data = json.loads((page.parent / "report.json").read_text())
    assert data["winner"]["family"] == "cuda-fused"
    assert [f["family"] for f in data["families"]] == ["triton-fused", "cuda-alternating", "cuda-fused"]
    assert sorted(p.name for p in page.parent.iterdir()) == sorted([*data["files"], "report.json"])


def test_every_string_is_escaped(lstm_page):
    page = lstm_page
    text = page.read_text(encoding="utf-8")
    links = _links(page)
    assert links.scripts == 0 and HOSTILE not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;" in text
    assert "needed &gt;" in text  # the triton-fused explanation ("... needed > ... limit") is escaped too


def test_the_page_shows_the_explanation_and_no_measured_plot_without_measurements(tmp_path):
    problem = Problem("lstm", batch=16, heads=1, head_dim=2976, direction="forward")
    run = report.collect(problem, "l4", backend="cuda-fused")
    assert run.winner is None and run.families[0].feasible == 0
    page = report.write(run, tmp_path)
    text = page.read_text(encoding="utf-8")
    assert "Why cuda-fused has no configuration" in text and "No measurements are stored" in text
    assert sorted(_links(page).images) == ["candidates.png", "cost_terms.png", "feasible.png", "slack.png"]
    for name in _links(page).images:
        _png_size((page.parent / name).read_bytes())


def test_the_same_run_gives_the_same_folder_and_bytes(lstm_run, lstm_page):
    written = {p.name: p.read_bytes() for p in lstm_page.parent.iterdir()}
    assert report.render(lstm_run) == written
    assert report.run_name(lstm_run.problem, lstm_run.profile, "cuda-fused") == (
        "lstm-both-cudafused-D768-N1-B16-bf16-h100-sxm5-80gb"
    )


def test_stacked_terms_add_up_to_the_prediction(lstm_run):
    # the cost-term plot stacks the largest compute term and every other term: that must be the
    # cost model's own total, for every configuration (a change in tunekit.cost fails here)
    for family in lstm_run.families:
        for point in family.points:
            compute = max(point.terms.get(t, 0.0) for t in report.COMPUTE_TERMS)
            rest = sum(v for t, v in point.terms.items() if t not in report.COMPUTE_TERMS)
            assert math.isclose(compute + rest, point.time_us, rel_tol=1e-9), point.name


def test_a_folder_that_is_not_a_report_is_not_replaced(tmp_path, lstm_run):
    folder = tmp_path / lstm_run.name
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a tunekit report"):
        report.write(lstm_run, tmp_path)
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_bad_measurements_are_refused():
    with pytest.raises(ValueError, match="measured_us: got nan"):
        report.Measurement("a", "cuda-fused", 1.0, float("nan"))


def test_measurements_come_from_the_tuning_database(tmp_path, tuning_db):
    from dbcases import measured, ranked

    from tunekit.db import TuningDB

    problem = Problem("gru", batch=3, heads=2, head_dim=24, dtype="float32")
    assert report.stored_measurements(problem, "a100") == () and not tuning_db.exists()  # nothing created
    candidates = ranked(problem, "a100", backend="triton-fused")
    with TuningDB(tuning_db) as db:
        db.write([measured(candidates[1][1], [4.0, 4.4, 4.2]), candidates[0][1]])
    found = report.stored_measurements(problem, "a100")
    assert [(m.name, m.measured_us) for m in found] == [(candidates[1][0].name, 4.2)]
    assert found[0].predicted_us == pytest.approx(candidates[1][1].predicted_us)


def test_the_cli_writes_reports_and_tune_keeps_its_json(tmp_path):
    from click.testing import CliRunner

    from tunekit.cli import main

    args = ["--gpu", "a100", "--cell", "gru", "--head-dim", "64", "--batch", "16"]
    runner = CliRunner()
    done = runner.invoke(main, ["report", *args, "--out", str(tmp_path / "r")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "r" / "gru-fwd-auto-D64-N1-B16-bf16-a100-sxm4-80gb" / "index.html").is_file()

    done = runner.invoke(main, ["tune", *args, "--json", "--report", str(tmp_path / "t")])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["problem"]["head_dim"] == 64  # stdout is still one JSON object
    assert "Report: " in done.stderr
    assert (tmp_path / "t" / "gru-fwd-auto-D64-N1-B16-bf16-a100-sxm4-80gb" / "slack.png").is_file()


def test_the_committed_sample_links_only_pngs_it_holds():
    from pathlib import Path

    sample = Path(__file__).parent.parent / "reports" / "sample_report"
    pages = sorted(sample.glob("*/index.html"))
    assert pages, f"no sample report under {sample} (tunekit report ... --out reports/sample_report)"
    for page in pages:
        for name in _links(page).images:
            _png_size((page.parent / name).read_bytes())

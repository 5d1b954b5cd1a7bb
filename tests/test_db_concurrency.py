"""Processes writing one tuning database at once lose nothing; a kill -9 mid-write loses nothing
committed. Processes start together through a pipe handshake (no sleeps); time-outs are generous
for a loaded 2-core machine."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tunekit.db import TuningDB

TIMEOUT_S = 600  # per process: 8 cold Python processes on 2 busy cores

# A `tunekit tune` process that imports everything, says "ready", and runs when told to go.
TUNE_CHILD = """
import sys
from tunekit.cli import main
print("ready", flush=True)
sys.stdin.readline()
main(sys.argv[1:])
"""

# A writer that commits runs of records and stops inside the transaction of run 3, half-way
# through its records, until it is killed.
WRITER_CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from dbcases import synthetic
from tunekit.db import TuningDB
from tunekit.db.store import TuningDB as Store
write = Store._upsert
count = 0
def upsert(conn, record, run_id):
    global count
    count += 1
    if count == 3 * 200 + 100:  # run 3, record 100 of 200: inside an open write transaction
        print("mid-write", flush=True)
        sys.stdin.readline()  # parked here until the parent kills the process
    return write(conn, record, run_id)
Store._upsert = staticmethod(upsert)
db = TuningDB(sys.argv[1])
for run in range(5):
    db.record_run(synthetic(200, f"run{run}"), f"writer run {run}")
    print(f"committed {run}", flush=True)
"""


def _start(code: str, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for(proc: subprocess.Popen, line: str) -> list[str]:
    seen = []
    while True:
        got = proc.stdout.readline()
        if not got:
            proc.kill()
            raise AssertionError(
                f"process ended before printing {line!r}: {seen} {proc.stderr.read()[-2000:]}"
            )
        seen.append(got.strip())
        if got.strip() == line:
            return seen


@pytest.mark.parametrize("writers", [2, 8])
def test_tune_processes_writing_one_database_at_once_lose_no_record(tmp_path: Path, writers: int):
    path = tmp_path / "shared.sqlite"
    head_dims = [16 * (i + 2) for i in range(writers)]
    if writers > 2:
        head_dims[-1] = head_dims[0]  # two of them tune the same problem: their records merge
    procs = []
    for d in head_dims:
        args = ["tune", "--gpu", "a100", "--cell", "gru", "--head-dim", str(d), "--top", "25", "--json"]
        procs.append(_start(TUNE_CHILD, [*args, "--db", str(path)]))
    for proc in procs:
        _wait_for(proc, "ready")
    for proc in procs:  # every process is loaded: let them all go at once
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out))
    expected = {c["name"] for data in outputs for c in data["candidates"]}
    with TuningDB(path) as db:
        stored = {r.name for r in db.records()}
        runs = db.runs()
    assert stored == expected and len(expected) > 20 * (writers - 1)
    assert sorted(r["id"] for r in runs) == sorted(data["db"]["run_id"] for data in outputs)
    assert all(data["db"]["error"] is None for data in outputs)


def test_a_kill_9_in_the_middle_of_a_write_keeps_every_committed_record(tmp_path: Path):
    path = tmp_path / "killed.sqlite"
    proc = _start(WRITER_CHILD, [str(path), str(Path(__file__).parent)])
    seen = _wait_for(proc, "mid-write")
    assert seen[-4:] == ["committed 0", "committed 1", "committed 2", "mid-write"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").exists()  # the crash left the log behind, as a power cut would

    with TuningDB(path, report=pytest.fail) as db:  # opens cleanly: no recovery, nothing moved aside
        names = {r.name for r in db.records()}
        commands = [r["command"] for r in db.runs()]
        db.write([])  # and takes writes again
    for run in range(3):
        assert sum(name.endswith(f"-run{run}") for name in names) == 200
    assert not any(name.endswith("-run3") for name in names)  # the open transaction left no trace
    assert commands == ["writer run 0", "writer run 1", "writer run 2"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    assert [p.name for p in tmp_path.iterdir() if "corrupt" in p.name] == []

"""Corpus extraction on a local Ray instance started by the test (2 CPUs, 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from tests.conftest import crossner_texts  # noqa: E402
from uner.cli import main as uner  # noqa: E402

LABELS = ["person", "location"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-corpus")
    texts = [text for text, _ in crossner_texts(4)][:12]
    for part in range(2):  # two files, read through a glob
        with (folder / f"docs-{part}.jsonl").open("w", encoding="utf-8") as sink:
            for index in range(part * 6, part * 6 + 6):
                sink.write(json.dumps({"id": f"doc-{index}", "text": texts[index]}) + "\n")
    return folder


def _extract_args(model, source, out) -> list[str]:
    """``uner extract``'s arguments for a corpus run (single-process, or with ``--ray`` added)."""
    return ["extract", "-m", str(model), "-l", ",".join(LABELS), "-i", str(source), "-o", str(out)]


@pytest.fixture(scope="module")
def single_process(corpus, uniner_smol_ggufs, tmp_path_factory):
    """What ``uner extract --output`` writes for the same documents, by id."""
    out = tmp_path_factory.mktemp("single") / "out.jsonl"
    merged = corpus / "all.txt.jsonl"
    merged.write_text("".join((corpus / f"docs-{p}.jsonl").read_text() for p in range(2)))
    with pytest.raises(SystemExit) as exit_info:
        uner([*_extract_args(uniner_smol_ggufs["q4_k_m"], merged, out), "-q", "--threads", "1"])
    merged.unlink()
    assert exit_info.value.code == 0
    return {record["id"]: record["entities"] for record in map(json.loads, out.read_text().splitlines())}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _by_id(folder) -> dict:
    rows = pq.read_table(folder).to_pylist()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "a document written twice"
    return {row["id"]: row["entities"] for row in rows}


def test_two_workers_write_what_one_process_writes_and_a_rerun_skips_them(
    local_ray, corpus, single_process, uniner_smol_ggufs, tmp_path
):
    from uner.distributed import extract_files

    out = tmp_path / "out"
    model = str(uniner_smol_ggufs["q4_k_m"])
    run = extract_files([str(corpus / "docs-*.jsonl")], out, model, LABELS, workers=2)
    assert run.written == 12 and _by_id(out) == single_process
    assert any(single_process.values())
    again = extract_files([str(corpus / "docs-*.jsonl")], out, model, LABELS, workers=2)
    assert (again.written, again.skipped) == (0, 12) and _by_id(out) == single_process
    with pytest.raises(Exception, match="labels and model"):
        extract_files([str(corpus / "docs-*.jsonl")], out, model, ["person"], workers=1)


def test_an_interrupted_run_resumes_with_every_document_once(
    local_ray, corpus, single_process, uniner_smol_ggufs, tmp_path
):
    from uner.distributed import extract_files

    out = tmp_path / "out"
    model = str(uniner_smol_ggufs["q4_k_m"])
    first = extract_files([str(corpus / "docs-0.jsonl")], out, model, LABELS)  # the run stopped after one file
    stale = out / ".staging-deadbeef"
    stale.mkdir()
    (stale / "part-deadbeef-00000-x.parquet").write_bytes(b"half a file")  # what a killed writer leaves
    rest = extract_files([str(corpus / "docs-*.jsonl")], out, model, LABELS)
    assert (first.written, rest.written, rest.skipped) == (6, 6, 6)
    assert _by_id(out) == single_process and not stale.exists()


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(corpus, single_process, uniner_smol_ggufs, tmp_path):
    out = tmp_path / "out"
    source = corpus / "docs-*.jsonl"
    command = [sys.executable, "-m", "uner.cli", *_extract_args(uniner_smol_ggufs["q4_k_m"], source, out)]
    command += ["--ray", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = threading.Event()

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            found = subprocess.run(
                ["pgrep", "-f", "MapWorker\\(MapBatches\\(DocumentReader"], capture_output=True, text=True
            )
            for pid in found.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:  # it ended between pgrep and the kill
                    continue
                killed.set()
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    _, err = process.communicate(timeout=600)
    killer.join()
    assert killed.is_set(), "no worker process was found to kill"
    assert process.returncode == 0, err[-2000:]
    assert _by_id(out) == {key: value for key, value in single_process.items()}

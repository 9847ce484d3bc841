"""Corpus extraction on a local Ray instance started by the test (2 CPUs, 127.0.0.1)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from tests.conftest import crossner_texts  # noqa: E402
from uner.cli import main as uner  # noqa: E402
from uner.distributed_sink import PartWriter, done_ids, part_files  # noqa: E402

LABELS = ["person", "location"]
DOCUMENTS = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-corpus")
    texts = [text for text, _ in crossner_texts(4)][:DOCUMENTS]
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
    rows = pq.read_table(part_files(folder)).to_pylist()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "a document written twice"
    return {row["id"]: row["entities"] for row in rows}


def _ray_command(model, source, out, *extra: str) -> list[str]:
    """``uner extract --ray`` in a process of its own, one document per part file."""
    args = _extract_args(model, source, out)
    return [sys.executable, "-m", "uner.cli", *args, "--ray", "--batch-size", "2", "--part-rows", "2", *extra]


def _wait_for_a_part(process, out, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not part_files(out):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no part file was committed"
        time.sleep(0.05)


def test_two_workers_write_what_one_process_writes_and_a_rerun_skips_them(
    local_ray, corpus, single_process, uniner_smol_ggufs, tmp_path
):
    from uner.distributed import extract_files

    out = tmp_path / "out"
    model = str(uniner_smol_ggufs["q4_k_m"])
    run = extract_files(
        [str(corpus / "docs-*.jsonl")], out, model, LABELS, workers=2, batch_size=4, part_rows=5, part_seconds=1e6
    )
    assert (run.written, run.rejected) == (DOCUMENTS, 0) and _by_id(out) == single_process
    assert len(part_files(out)) == 2  # batches of 4, a part once 5 or more are in: 8 + 4
    assert any(single_process.values())
    again = extract_files([str(corpus / "docs-*.jsonl")], out, model, LABELS, workers=2)
    assert (again.written, again.skipped) == (0, DOCUMENTS) and _by_id(out) == single_process
    with pytest.raises(Exception, match="labels and model"):
        extract_files([str(corpus / "docs-*.jsonl")], out, model, ["person"], workers=1)


def test_unreadable_documents_and_reused_ids_are_counted_and_left_out(local_ray, uniner_smol_ggufs, tmp_path):
    from uner.distributed import extract_files

    source = tmp_path / "docs.jsonl"
    rows = [{"id": "a", "text": "Barack Obama visited Paris."}, {"id": "b", "text": None}]
    rows += [{"id": "a", "text": "Angela Merkel visited Rome."}, {"id": "c", "text": "Ada Lovelace lived in London."}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    run = extract_files([str(source)], out, str(uniner_smol_ggufs["q4_k_m"]), LABELS, output_format="jsonl")
    assert (run.written, run.rejected) == (2, 2)
    written = [json.loads(line) for path in part_files(out) for line in path.read_text().splitlines()]
    assert sorted(row["id"] for row in written) == ["a", "c"]
    # Ray Data returns rows in the order workers finish them: whichever "a" arrives first is
    # kept, whole (its own entities), and the other is rejected
    kept = {entity["text"] for entity in next(row for row in written if row["id"] == "a")["entities"]}
    assert kept and (kept <= {"Barack Obama", "Paris"} or kept <= {"Angela Merkel", "Rome"})


def test_a_folder_of_parquet_files_named_by_uri_is_read_as_parquet(
    local_ray, corpus, single_process, uniner_smol_ggufs, tmp_path
):
    from uner.distributed import extract_files
    from uner.distributed_inputs import input_kind

    folder = tmp_path / "parquet"
    folder.mkdir()
    for part in range(2):
        rows = [json.loads(line) for line in (corpus / f"docs-{part}.jsonl").read_text().splitlines()[:2]]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"docs-{part}.parquet")
    (folder / "_SUCCESS").write_text("")  # what Spark leaves beside its parts
    assert input_kind([folder.as_uri()]) == ".parquet"
    out = tmp_path / "out"
    run = extract_files([folder.as_uri()], out, str(uniner_smol_ggufs["q4_k_m"]), LABELS)
    assert run.written == 4 and _by_id(out) == {
        key: single_process[key] for key in ("doc-0", "doc-1", "doc-6", "doc-7")
    }


def test_workers_that_would_hold_every_cpu_are_warned_about(local_ray, caplog):
    from uner.distributed import extract_dataset

    rows = ray.data.from_items([{"id": "a", "text": "Ada Lovelace lived in London."}])

    def ours() -> list[str]:
        return [record.getMessage() for record in caplog.records if record.name == "uner.distributed"]

    with caplog.at_level("WARNING", logger="uner.distributed"):
        extract_dataset(rows, "model.gguf", LABELS, workers=1)  # lazy: nothing runs, nothing loads
        assert not ours()
        extract_dataset(rows, "model.gguf", LABELS, workers=2)  # 2 of the 2 CPUs: a read would wait
    assert any("num_cpus=0" in message for message in ours())


def test_a_model_no_worker_can_load_is_one_error_line(local_ray, corpus, tmp_path, capsys):
    from uner.distributed import extract_files
    from uner.errors import DistributedError

    with pytest.raises(DistributedError, match="does not exist|not found") as error:
        extract_files([str(corpus / "docs-0.jsonl")], tmp_path / "out", str(tmp_path / "missing.gguf"), LABELS)
    assert "\n" not in str(error.value)
    assert part_files(tmp_path / "out") == []


def test_a_run_stopped_with_ctrl_c_keeps_its_parts_and_a_rerun_completes_it(
    local_ray, corpus, single_process, uniner_smol_ggufs, tmp_path
):
    from uner.distributed import extract_files

    out = tmp_path / "out"
    model = str(uniner_smol_ggufs["q4_k_m"])
    command = _ray_command(model, corpus / "docs-*.jsonl", out, "-q")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_a_part(process, out)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Error: interrupted" in err and "Traceback" not in err
    kept = done_ids(out)
    assert 0 < len(kept) < DOCUMENTS, "the run was not stopped mid-way"
    (out / ".part-0123456789ab-00007.parquet.1234.partial").write_bytes(b"half a part")  # a killed writer's
    rest = extract_files([str(corpus / "docs-*.jsonl")], out, model, LABELS)
    assert (rest.written, rest.skipped) == (DOCUMENTS - len(kept), len(kept))
    assert _by_id(out) == single_process and not list(out.glob(".part-*"))


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(corpus, single_process, uniner_smol_ggufs, tmp_path):
    out = tmp_path / "out"
    command = _ray_command(uniner_smol_ggufs["q4_k_m"], corpus / "docs-*.jsonl", out, "--workers", "2")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = threading.Event()

    def kill_one_worker() -> None:
        _wait_for_a_part(process, out)  # mid-run: some documents are done, the others are not
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            busy = _busy_worker()  # one decoding a batch, not an idle one between batches
            if busy is not None:
                busy.kill()
                killed.set()
                return

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    _, err = process.communicate(timeout=600)
    killer.join()
    assert killed.is_set(), "no worker process was found to kill"
    assert process.returncode == 0, err[-2000:]
    assert len(part_files(out)) > 1 and _by_id(out) == single_process


def _busy_worker():
    """A ``DocumentReader`` worker process decoding now (over half a core), or ``None``."""
    import psutil

    workers = [
        p for p in psutil.process_iter(["cmdline"]) if "MapBatches(DocumentReader" in " ".join(p.info["cmdline"] or [])
    ]
    for worker in workers:
        try:
            if worker.cpu_percent(interval=0.2) > 50:
                return worker
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_part_is_committed_by_size_by_age_and_when_the_run_stops(tmp_path):
    now = [0.0]
    rows = pa.table({"id": ["a", "b"], "entities": [[], []]})
    with pytest.raises(KeyboardInterrupt), PartWriter(tmp_path, "parquet", 3, 10.0, clock=lambda: now[0]) as writer:
        writer.add(rows)
        assert part_files(tmp_path) == []  # 2 rows, young: still buffered
        writer.add(rows)  # 4 >= 3 rows
        assert len(part_files(tmp_path)) == 1
        writer.add(rows.slice(0, 1))
        now[0] = 11.0
        writer.add(rows.slice(1, 1))  # 2 rows, but 11 s old
        assert len(part_files(tmp_path)) == 2
        writer.add(rows)
        raise KeyboardInterrupt  # Ctrl-C: the 2 buffered rows are finished documents, kept
    assert writer.written == 8 and len(part_files(tmp_path)) == 3
    assert sorted(done_ids(tmp_path)) == sorted(["a", "b"] * 4) and not list(tmp_path.glob(".*"))

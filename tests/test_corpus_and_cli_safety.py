"""Corpus runs that meet bad documents, resumes and odd outputs; OS errors, an unreachable Hub,
bad bench data and dying bench children: each one ``Error:`` line (or a warning per skipped
document), never a traceback, never a half-written file that looks finished."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_cli import assert_one_line_error, run
from uner.cli import main as uner

SHORT = ["--max-new-tokens", "4", "-q"]


def _docs(tmp_path: Path, lines: list[str], name: str = "docs.jsonl") -> Path:
    docs = tmp_path / name
    docs.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return docs


def _corpus_argv(model, docs, out, labels="person", *extra) -> list:
    return ["extract", "-m", model, "-l", labels, "-i", docs, "-o", out, *SHORT, *extra]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- 1a: a bad document is reported and skipped, the others are written ---------------------

BAD_AND_GOOD = [
    '{"id": "a", "text": "Barack Obama visited Paris."}',
    '{"id": "b", "text": "a lone surrogate \\ud800 here"}',  # JSON escape: decodes to a lone surrogate
    '{"id": null, "text": "an id that is null"}',
    '{"id": {"k": 1}, "text": "an id that is an object"}',
    '{"id": "e"}',
    '{"id": "f", "text": 5}',
    '{"id": 7, "text": "Angela Merkel lives in Berlin."}',
    "not JSON at all",
    '{"text": "Marie Curie was born in Warsaw."}',
]


def _warnings(caplog) -> list[str]:
    """The warning lines a run logged (pytest holds them instead of stderr), then forgets them."""
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("uner")]
    caplog.clear()
    return lines


def test_unreadable_documents_are_reported_and_skipped_and_the_others_written(tiny_spm_hf, tmp_path, capsys, caplog):
    docs, out = _docs(tmp_path, BAD_AND_GOOD), tmp_path / "out.jsonl"
    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, out), capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert [r["id"] for r in _lines(out)] == ["a", "7", "9"]  # an integer id is its decimal string
    warnings = _warnings(caplog)
    assert all("\n" not in line for line in warnings)
    assert [w.split(":")[0] for w in warnings[:-1]] == [
        "skipping line 2 (id 'b')",
        "skipping line 3",
        "skipping line 4",
        "skipping line 5 (id 'e')",
        "skipping line 6 (id 'f')",
        "skipping line 8",
    ]
    assert "lone surrogate" in warnings[0] and "null" in warnings[1] and "an object" in warnings[2]
    assert "wrote 3 documents" in warnings[-1] and "skipped 6 unreadable documents" in warnings[-1]
    first = out.read_bytes()
    # the resume does not die on them either: nothing recomputed, the same six reported again
    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, out), capsys)
    assert code == 0, err
    assert out.read_bytes() == first
    warnings = _warnings(caplog)
    assert len(warnings) == 7 and "wrote 0 documents" in warnings[-1] and "(3 already there)" in warnings[-1]


# -- 1b: the output records its labels and model; a resume with others is refused ----------


def test_a_resume_with_other_labels_or_another_model_is_refused(tiny_spm_hf, tmp_path, capsys, monkeypatch):
    docs = _docs(tmp_path, ['{"id": "a", "text": "Barack Obama visited Paris."}'])
    out = tmp_path / "out.jsonl"
    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, out, "person,location"), capsys)
    assert code == 0, err
    written = out.read_bytes()
    assert set(_lines(out)[0]) == {"id", "entities"}  # the document lines keep their format
    meta = json.loads((tmp_path / "out.jsonl.meta.json").read_text())
    assert meta["labels"] == ["person", "location"] and meta["model"] == str(Path(tiny_spm_hf).resolve())

    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, out, "person"), capsys)
    assert_one_line_error(code, err, "labels (person, location there, person now)")
    assert "new --output" in err

    other_model = shutil.copytree(tiny_spm_hf, tmp_path / "other-model")
    code, _, err = run(uner, _corpus_argv(other_model, docs, out, "person,location"), capsys)
    assert_one_line_error(code, err, f"model ({Path(tiny_spm_hf).resolve()} there, {other_model} now)")
    assert out.read_bytes() == written

    # the same labels in another order, and the same model by another spelling, resume
    monkeypatch.chdir(Path(tiny_spm_hf).parent)
    code, _, err = run(uner, _corpus_argv(Path(".") / Path(tiny_spm_hf).name, docs, out, "location,person"), capsys)
    assert code == 0, err
    assert out.read_bytes() == written


# -- 1c / 1d: --output that is --input; --threads over the limit -----------------------------


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_an_output_that_is_the_input_is_refused(tiny_spm_hf, tmp_path, capsys, monkeypatch, spelling):
    docs = _docs(tmp_path, ['{"id": "a", "text": "Barack Obama visited Paris."}'])
    before = docs.read_bytes()
    monkeypatch.chdir(tmp_path)
    output = {"same": docs, "dotted": Path(".") / "sub" / ".." / docs.name, "symlink": tmp_path / "link.jsonl"}[
        spelling
    ]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(docs)
    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, output), capsys)
    assert_one_line_error(code, err, "expected --output to be another file than --input")
    assert docs.read_bytes() == before


@pytest.mark.parametrize("command", ["extract", "bench"])
def test_threads_above_512_are_refused_as_a_usage_error(tiny_spm_hf, tmp_path, capsys, command):
    argv = {
        "extract": ["extract", "-m", tiny_spm_hf, "-l", "person", "-t", "Paris.", *SHORT],
        "bench": ["bench", "-r", tiny_spm_hf, "-d", tmp_path / "none.json", "-o", tmp_path / "b", "-q"],
    }[command]
    code, _, err = run(uner, [*argv, "--threads", "513"], capsys)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "512" in errors[0] and "Traceback" not in err


# -- 2: OS errors are one line naming the path and the reason --------------------------------


def test_an_output_that_is_a_folder_is_one_error_line(tiny_spm_hf, tmp_path, capsys):
    docs, folder = _docs(tmp_path, ['{"id": "a", "text": "Paris."}']), tmp_path / "results"
    folder.mkdir()
    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, folder), capsys)
    assert_one_line_error(code, err, str(folder))
    assert "folder" in err


def test_an_output_under_a_regular_file_is_one_error_line(tiny_spm_hf, tmp_path, capsys):
    docs, plain = _docs(tmp_path, ['{"id": "a", "text": "Paris."}']), tmp_path / "plain.txt"
    plain.write_text("not a folder")
    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, plain / "out.jsonl"), capsys)
    assert_one_line_error(code, err, str(plain))
    assert plain.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("error", "fragments"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/models/m.gguf"), ["/models/m.gguf", "Permission denied"]),
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/out.jsonl"),
            ["/data/out.jsonl", "No space left", "free some space"],
        ),
        (OSError(errno.EROFS, "Read-only file system", "/ro/out.jsonl"), ["/ro/out.jsonl", "Read-only file system"]),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/results"), ["/data/results", "Is a directory"]),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/f.txt/o"), ["/data/f.txt/o", "Not a directory"]),
    ],
    ids=["permission", "disk-full", "read-only", "is-a-folder", "not-a-folder"],
)
def test_os_errors_are_one_error_line_naming_the_path_and_the_reason(
    tiny_spm_hf, tmp_path, capsys, monkeypatch, error, fragments
):
    from uner import cli as uner_cli

    def fail(*args, **kwargs):  # the OS refusing, where the CLI meets the file system
        raise error

    monkeypatch.setattr(uner_cli, "load", fail)
    code, _, err = run(uner, ["extract", "-m", tiny_spm_hf, "-l", "person", "-t", "Paris.", *SHORT], capsys)
    assert_one_line_error(code, err, fragments[0])
    assert all(fragment in err for fragment in fragments)


# -- 3: an unreachable Hub endpoint ----------------------------------------------------------


def test_pull_from_an_unreachable_endpoint_is_one_error_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        {
            "HF_ENDPOINT": "http://127.0.0.1:9",  # a closed local port: refused at once
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_ETAG_TIMEOUT": "2",
            "HF_HUB_DOWNLOAD_TIMEOUT": "2",
            "UNER_CACHE": str(tmp_path / "uner"),
            "PYTHONPATH": str(ROOT),
        }
    )
    code = "import sys; from uner.cli import main; main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, "pull", "me/tiny-uner", "--variant", "q8_0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "http://127.0.0.1:9" in lines[0] and "me/tiny-uner" in lines[0]


# -- 4: bench data that holds no queries, or is not eval data; atomic outputs ----------------


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.json", "[]", "an empty list"),
        ("object.json", "{}", "not a list"),
        ("empty.txt", "", "no sentences"),
        ("untagged.bio", "O\tshow\nO\tme\n", "no tagged entity type"),
        (
            "numbers.json",
            json.dumps(
                [{"id": 1, "conversations": [{"value": v} for v in (1, 2, "What describes person in the text?", "[]")]}]
            ),
            "not a string",
        ),
    ],
)
def test_bench_data_without_queries_is_one_error_line(tiny_spm_hf, tmp_path, capsys, name, content, fragment):
    data = tmp_path / name
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "bench"
    code, _, err = run(uner, ["bench", "-r", tiny_spm_hf, "-d", data, "-o", out, "--no-baselines", "-q"], capsys)
    assert_one_line_error(code, err, fragment)
    assert str(data) in err and not (out / "results.json").exists()


def test_an_interrupted_bench_leaves_no_finished_looking_results(tiny_spm_hf, tmp_path, capsys, monkeypatch):
    from uner.bench import cli as bench_cli

    data = tmp_path / "tiny.bio"
    data.write_text("O\tshow\nO\tme\nB-ACTOR\tbruce\nI-ACTOR\twillis\n", encoding="utf-8")
    out = tmp_path / "bench"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_cli, "plots", interrupted)
    argv = [
        "bench",
        "-r",
        tiny_spm_hf,
        "-d",
        data,
        "-o",
        out,
        "--no-baselines",
        "--max-new-tokens",
        "2",
        "--threads",
        "2",
        "-q",
    ]
    code, _, err = run(uner, argv, capsys)
    assert code == 130 and "Error: interrupted" in err, err
    assert (out / "report.md").exists()  # written (whole) before the interruption
    assert not (out / "results.json").exists()
    assert not list(out.glob(".*.partial"))


def test_predictions_are_written_whole_or_not_at_all(tmp_path):
    from uner.bench.report import write_predictions
    from uner.bench.runner import Prediction
    from uner.bench.suite import VariantRun, VariantSpec

    def predictions():
        yield Prediction("q1", "d", "t", "person", "[]", "[]", [], 3, 1, 0.1, 0.05)
        raise KeyboardInterrupt  # stopped while the file is being written

    class Interrupted(list):
        def __iter__(self):
            return predictions()

    final = tmp_path / "predictions-v.jsonl"
    final.write_text("the previous run's\n")
    with pytest.raises(KeyboardInterrupt):
        write_predictions(tmp_path, [VariantRun(VariantSpec("v", "p"), "torch", Interrupted(), 0, 0, 0, 0)])
    assert final.read_text() == "the previous run's\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions-v.jsonl"]


# -- 5: a missing backend in a bench child ---------------------------------------------------


def test_a_backend_missing_in_a_bench_child_is_one_error_line(tiny_spm_hf, tmp_path, capsys, monkeypatch):
    # the child process is spawned with this sys.path: there, transformers cannot be imported
    shadow = tmp_path / "shadow" / "transformers"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("transformers is hidden by the test")\n')
    import transformers  # noqa: F401  (this process keeps the real one)

    monkeypatch.syspath_prepend(str(tmp_path / "shadow"))
    data = tmp_path / "tiny.bio"
    data.write_text("O\tshow\nB-ACTOR\tbruce\n", encoding="utf-8")
    argv = [
        "bench",
        "-r",
        tiny_spm_hf,
        "-d",
        data,
        "-o",
        tmp_path / "bench",
        "--no-baselines",
        "--max-new-tokens",
        "2",
        "-q",
    ]
    code, _, err = run(uner, argv, capsys)
    assert_one_line_error(code, err, "the torch backend needs the 'transformers' package: pip install")
    assert "BrokenProcessPool" not in err


# -- 6: a --window no text can fit -----------------------------------------------------------


def test_a_window_too_small_for_the_prompt_is_an_error_before_any_text(tiny_spm_hf, tmp_path, capsys):
    docs, out = _docs(tmp_path, ['{"id": "a", "text": "Barack Obama visited Paris."}']), tmp_path / "out.jsonl"
    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, out), capsys)
    assert code == 0, err
    # every document is done, so no text would ever reach the window check inside the engine
    code, _, err = run(uner, _corpus_argv(tiny_spm_hf, docs, out, "person", "--window", "64"), capsys)
    assert_one_line_error(code, err, "expected a window leaving room for the text")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state  # a zombie has exited; only its parent's bookkeeping is left


CHILD_OF_A_KILLED_BENCH = """
import multiprocessing, os, sys, time
from uner.bench.suite import _exit_with_parent

def variant(parent):
    _exit_with_parent(parent, every=0.1)
    time.sleep(120)  # a long variant run

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=variant, args=(os.getpid(),))
    child.start()
    print(child.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_a_variant_process_ends_when_the_bench_that_spawned_it_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "bench_parent.py"
    script.write_text(CHILD_OF_A_KILLED_BENCH)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)
    assert _running(child)  # alive while its bench is
    parent.send_signal(signal.SIGKILL)  # SIGKILL: the parent cannot end its children itself
    parent.wait()
    deadline = time.monotonic() + 15
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphaned = _running(child)
    if orphaned:
        os.kill(child, signal.SIGKILL)  # a failing run must not leave it behind either
    assert not orphaned

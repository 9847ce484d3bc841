"""Bad inputs through the real ``uner`` and ``uner-export`` commands, one table row each.

Every row asserts the contract of ``run_app`` (``runtimes/_cli_utils.py``): the exit code (1 for
an error, 2 for a usage error), exactly one ``Error:`` line on stderr (a usage error may add
typer's ``Usage:``/``Try`` lines; an error adds nothing), no traceback anywhere, and nothing left
behind: the case's folder (inputs and outputs alike) is listed before and after the run, so no
output file or folder, no ``manifest.json``/``results.json``, no changed input appears.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TINY_RECIPE, write_recipe
from tests.test_cli import run
from uner.cli import main as uner
from uner.toolkit.cli import main as uner_export

#: nothing listens on port 9 (discard) of the loopback: a connection is refused at once
CLOSED_PORT = "http://127.0.0.1:9"
SHORT = ["--max-new-tokens", "4"]


@pytest.fixture(autouse=True)
def _hub_at_a_closed_port(monkeypatch, tmp_path_factory):
    """Every case talks to a Hub endpoint that refuses at once (never the real one) and caches
    into a folder of its own. huggingface_hub reads its settings at import, so its constants
    are set too, as the environment would have set them in a fresh process."""
    from huggingface_hub import constants

    cache = tmp_path_factory.mktemp("hf-cache")
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_PORT)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2")
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", CLOSED_PORT + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 2)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 2)


# -- helpers ---------------------------------------------------------------------------------


class Scene:
    """What a case builds its bad input from: its own folder, and the session's tiny models
    (built only when a case asks for them)."""

    def __init__(self, tmp: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
        self.tmp, self.monkeypatch = tmp, monkeypatch
        self._request, self._capsys = request, capsys

    @property
    def hf(self) -> Path:
        return self._request.getfixturevalue("tiny_spm_hf")

    @property
    def gguf(self) -> Path:
        return self._request.getfixturevalue("tiny_spm_ggufs")["f32"]

    @property
    def onnx(self) -> Path:
        return self._request.getfixturevalue("tiny_spm_onnx_fp32")

    def recipe_output(self) -> Path:
        """A copy of the tiny model's recipe output (GGUF F16 + Q8_0, ONNX fp32, benched)."""
        return self._request.getfixturevalue("export_copy")

    def model(self, breakage: str | None = None) -> Path:
        """A copy of the tiny HF folder in the case's folder, broken as ``BREAKAGES`` says."""
        model = Path(shutil.copytree(self.hf, self.tmp / "model"))
        if breakage is not None:
            BREAKAGES[breakage](model)
        return model

    def copy(self, folder: Path, name: str) -> Path:
        return Path(shutil.copytree(folder, self.tmp / name))

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def jsonl(self, name: str, *records: dict) -> Path:
        return self.file(name, "".join(json.dumps(record) + "\n" for record in records))

    def succeed(self, main, argv: list) -> None:
        """A run that must work: the state a case starts from (a first corpus run...)."""
        code, _, err = run(main, argv, self._capsys)
        assert code == 0, err


def _edit_config(model: Path, **changes) -> None:
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **changes}))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BREAKAGES: dict[str, Callable[[Path], object]] = {
    "config-not-json": lambda m: (m / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": '),
    "config-wrong-types": lambda m: _edit_config(m, hidden_size="sixty-four", num_hidden_layers=[2]),
    "not-llama": lambda m: _edit_config(m, architectures=["BertForMaskedLM"], model_type="bert"),
    "no-weights": lambda m: (m / "model.safetensors").unlink(),
    "truncated-weights": lambda m: _truncate(m / "model.safetensors"),
    # the SentencePiece model gone and a tokenizer.json cut mid-file in its place
    "broken-tokenizer-json": lambda m: ((m / "tokenizer.model").unlink(), (m / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {')),
}


def _listing(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder``: folders by name, files by size and modification time."""
    return {
        path.relative_to(folder).as_posix(): ("dir",) if path.is_dir() else (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def _stderr_lines(err: str) -> list[str]:
    """stderr's non-blank lines, without tqdm's progress bars (redrawn with ``\\r``)."""
    return [line for line in err.splitlines() if line.strip() and "%|" not in line and "it/s]" not in line]


def assert_failed_cleanly(code, out: str, err: str, logged: str, expected_code: int, says: str, stdout: str = "") -> None:
    """The CLI contract for a bad input (see the module docstring); ``says``: a fragment of the
    Error line; ``stdout``: a fragment every stdout line holds ("" = stdout stays empty)."""
    assert "Traceback" not in out + err + logged, err or logged
    assert code == expected_code, f"exit {code}, expected {expected_code}; stderr:\n{err}"
    lines = _stderr_lines(err)
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, f"expected one Error line, got {len(errors)}; stderr:\n{err}"
    if expected_code == 1:  # an error is that one line; only typer's usage errors add their usage lines
        assert lines == errors, f"stderr holds more than the Error line:\n{err}"
    assert says in errors[0], f"{says!r} not in {errors[0]!r}"
    if stdout:
        assert out.strip() and all(stdout in line for line in out.splitlines() if line.strip()), out
    else:
        assert not out.strip(), f"stdout of a failed run: {out!r}"


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    main: Callable  # uner or uner_export
    argv: Callable[[Scene], list]  # builds the bad input in the scene's folder; the command line
    code: int  # 1: an error, 2: a usage error
    says: str  # a fragment of the Error line
    stdout: str = ""  # a fragment of every stdout line ("": stdout stays empty)

    def __str__(self) -> str:
        return self.id


def _export_cases(command: str) -> list[Case]:
    """The bad sources and outputs both exporters must refuse."""

    def export(s: Scene, source: Path, *extra) -> list:
        return [command, source, "--out", s.tmp / "out", *extra]

    def broken(breakage: str, says: str) -> Case:
        return Case(f"{command}-{breakage}", uner_export, lambda s: export(s, s.model(breakage)), 1, says)

    def existing_output(s: Scene) -> list:
        if command == "gguf":
            s.file("out/model.F16.gguf", b"GGUF an earlier export")
        else:
            s.copy(s.onnx, "out")
        return export(s, s.model())

    return [
        Case(f"{command}-missing-source", uner_export, lambda s: export(s, s.tmp / "nope"), 1, "does not exist"),
        Case(f"{command}-source-is-a-file", uner_export, lambda s: export(s, s.file("model.safetensors", b"\0" * 16)), 1, "model.safetensors"),
        broken("config-not-json", "config.json"),
        broken("config-wrong-types", "hidden_size"),
        broken("not-llama", "BertForMaskedLM"),
        broken("no-weights", "safetensors"),
        broken("truncated-weights", "truncated or corrupt"),
        broken("broken-tokenizer-json", "tokenizer.json"),
        Case(f"{command}-out-is-a-file", uner_export, lambda s: [command, s.model(), "--out", s.file("out", "a file")], 1, "out"),
        Case(f"{command}-out-inside-the-source", uner_export, lambda s: [command, s.model(), "--out", s.tmp / "model" / "out"], 1, "inside"),
        Case(f"{command}-existing-output-without-force", uner_export, existing_output, 1, "--force"),
    ]


CASES: list[Case] = [
    # -- uner-export gguf / onnx: bad sources and outputs ---------------------------------
    *_export_cases("gguf"),
    Case("gguf-unknown-quant", uner_export, lambda s: ["gguf", s.model(), "--out", s.tmp / "out", "--quant", "q8_0,q9_z"], 1, "q9_z"),
    Case("gguf-outtype-nonsense", uner_export, lambda s: ["gguf", s.model(), "--out", s.tmp / "out", "--outtype", "f12"], 2, "--outtype"),
    Case("gguf-threads-0", uner_export, lambda s: ["gguf", s.model(), "--out", s.tmp / "out", "--quant", "q8_0", "--threads", "0"], 2, "--threads"),
    Case("gguf-threads-100000", uner_export, lambda s: ["gguf", s.model(), "--out", s.tmp / "out", "--quant", "q8_0", "--threads", "100000"], 2, "--threads"),
    *_export_cases("onnx"),
    Case("onnx-precision-nonsense", uner_export, lambda s: ["onnx", s.model(), "--out", s.tmp / "out", "--precision", "int3"], 2, "--precision"),
    Case("onnx-int4-on-tensorrt", uner_export, lambda s: ["onnx", s.model(), "--out", s.tmp / "out", "-p", "int4", "--device", "tensorrt"], 1, "tensorrt"),
    Case("onnx-block-size-7", uner_export, lambda s: ["onnx", s.model(), "--out", s.tmp / "out", "-p", "int4", "--block-size", "7"], 1, "block"),
    # -- uner extract ---------------------------------------------------------------------
    Case("extract-missing-model", uner, lambda s: ["extract", "-m", s.tmp / "missing", "-l", "person", "-t", "Paris."], 1, "does not exist"),
    Case("extract-model-like-out/m.gguf", uner, lambda s: (s.monkeypatch.chdir(s.tmp), ["extract", "-m", "out/m.gguf", "-l", "person", "-t", "Paris."])[1],
         1, "out/m.gguf"),
    Case("extract-random-bytes-x.gguf", uner, lambda s: ["extract", "-m", s.file("x.gguf", os.urandom(4096)), "-l", "person", "-t", "Paris."], 1, "x.gguf"),
    Case("extract-empty-labels", uner, lambda s: ["extract", "-m", s.gguf, "-l", " , ", "-t", "Paris."], 1, "at least one entity label"),
    Case("extract-labels-file-missing", uner, lambda s: ["extract", "-m", s.gguf, "--labels-file", s.tmp / "labels.txt", "-t", "Paris."], 1, "labels.txt"),
    Case("extract-labels-file-empty", uner, lambda s: ["extract", "-m", s.gguf, "--labels-file", s.file("labels.txt", "# none\n\n"), "-t", "Paris."],
         1, "labels.txt"),
    Case("extract-input-missing", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-i", s.tmp / "docs.jsonl"], 1, "docs.jsonl"),
    Case("extract-input-not-utf8", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-i", s.file("docs.txt", "Café in Zürich".encode("latin-1"))],
         1, "UTF-8"),
    Case("extract-input-invalid-jsonl", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-i", s.file("docs.jsonl", '{"text": "Paris."}\n{"text": \n')],
         1, "line 2"),
    Case("extract-input-is-a-folder", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-i", s.copy(s.onnx, "docs")], 1, "folder"),
    Case("extract-corpus-input-is-a-folder", uner,
         lambda s: ["extract", "-m", s.gguf, "-l", "person", "-i", s.copy(s.onnx, "docs"), "-o", s.tmp / "out.jsonl"], 1, "folder"),
    Case("extract-output-is-the-input", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-i", (d := s.jsonl("docs.jsonl", {"text": "Paris."})), "-o", d],
         1, "another file than --input"),
    Case("extract-output-is-a-folder", uner,
         lambda s: ["extract", "-m", s.gguf, "-l", "person", "-i", s.jsonl("docs.jsonl", {"text": "Paris."}), "-o", s.copy(s.onnx, "results"), *SHORT],
         1, "results"),
    Case("extract-window-too-small", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-t", "Paris.", "--window", "64"], 1, "window"),
    Case("extract-window-below-64", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-t", "Paris.", "--window", "8"], 2, "--window"),
    Case("extract-max-new-tokens-0", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-t", "Paris.", "--max-new-tokens", "0"], 2, "--max-new-tokens"),
    Case("extract-kv-cache-f32-on-onnx", uner, lambda s: ["extract", "-m", s.onnx, "-l", "person", "-t", "Paris.", "--kv-cache", "f32", *SHORT],
         1, "kv_cache_type"),
    Case("extract-allow-pickle-on-gguf", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-t", "Paris.", "--allow-pickle", *SHORT],
         1, "allow_pickle"),
    Case("extract-provider-cuda-without-cuda", uner, lambda s: (_hide_cuda(s), ["extract", "-m", s.onnx, "-l", "person", "-t", "Paris.", "--provider", "cuda"])[1],
         1, "CUDA"),
    Case("extract-lone-surrogate-in-argv", uner, lambda s: ["extract", "-m", s.gguf, "-l", "person", "-t", "caf" + os.fsdecode(b"\xff"), *SHORT],
         1, "lone surrogate"),
    Case("extract-lone-surrogate-in-label", uner, lambda s: ["extract", "-m", s.gguf, "-l", os.fsdecode(b"per\xffson"), "-t", "Paris.", *SHORT],
         1, "lone surrogate"),
    Case("extract-resume-with-other-labels", uner, lambda s: _resumed_with_other_labels(s), 1, "labels (person there, location now)"),
    # -- uner bench -----------------------------------------------------------------------
    Case("bench-missing-data", uner, lambda s: _bench(s, s.tmp / "test.bio"), 1, "does not exist"),
    Case("bench-empty-eval-file", uner, lambda s: _bench(s, s.file("eval.json", "[]")), 1, "empty list"),
    Case("bench-data-not-json", uner, lambda s: _bench(s, s.file("eval.json", "this is not JSON\n")), 1, "eval.json"),
    Case("bench-data-not-bio", uner, lambda s: _bench(s, s.file("notes.txt", "Dear diary,\ntoday was long.\n")), 1, "notes.txt"),
    Case("bench-data-binary", uner, lambda s: _bench(s, s.file("test.bio", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))), 1, "test.bio"),
    Case("bench-reference-is-a-gguf", uner, lambda s: _bench(s, _bio(s), reference=s.gguf), 1, "--reference"),
    Case("bench-candidate-missing", uner, lambda s: _bench(s, _bio(s), "-c", s.tmp / "nope.gguf"), 1, "nope.gguf"),
    Case("bench-limit-0", uner, lambda s: _bench(s, _bio(s), "--limit", "0"), 2, "--limit"),
    # -- uner-export recipe ---------------------------------------------------------------
    Case("recipe-unknown-name", uner_export, lambda s: ["recipe", "UniNER-9B-nope", "--out", s.tmp / "out"], 1, "UniNER-9B-nope"),
    Case("recipe-toml-syntax-error", uner_export, lambda s: ["recipe", _recipe(s, 'name = "tiny\n'), "--out", s.tmp / "out"], 1, "TOML"),
    Case("recipe-unknown-top-level-key", uner_export, lambda s: ["recipe", _recipe(s, 'colour = "blue"\n' + TINY_RECIPE), "--out", s.tmp / "out"],
         1, "colour"),
    # a typo inside a table ("limt"): refused on load, as the top level is (--no-bench: were it
    # accepted, the run would only convert the tiny model)
    Case("recipe-unknown-key-in-a-table", uner_export,
         lambda s: ["recipe", _recipe(s, TINY_RECIPE.replace("limit = 4", "limt = 4")), "--out", s.tmp / "out", "--no-bench"], 1, "limt"),
    Case("recipe-data-dir-without-the-data", uner_export,
         lambda s: ["recipe", _recipe(s, TINY_RECIPE), "--out", s.tmp / "out", "--data-dir", s.file("data/README", "empty").parent], 1, "CrossNER_AI.json"),
    Case("recipe-no-data-dir", uner_export,
         lambda s: (s.monkeypatch.delenv("UNER_DATA", raising=False), ["recipe", _recipe(s, TINY_RECIPE), "--out", s.tmp / "out"])[1], 1, "--data-dir"),
    # -- uner-export verify ---------------------------------------------------------------
    Case("verify-no-manifest", uner_export, lambda s: ["verify", s.file("out/model.gguf", b"GGUF").parent], 1, "no manifest"),
    Case("verify-manifest-not-json", uner_export, lambda s: ["verify", s.file("out/manifest.json", '{"files": ').parent], 1, "JSON"),
    Case("verify-manifest-names-../outside", uner_export, lambda s: ["verify", _manifest_naming(s, "../outside.txt")], 1, "../outside.txt"),
    Case("verify-a-tampered-file", uner_export, lambda s: ["verify", _tampered(s.copy(s.onnx, "out"))], 1, "differ", stdout="MISMATCH"),
    # -- uner-export push --dry-run -------------------------------------------------------
    Case("push-not-a-recipe-output", uner_export, lambda s: ["push", s.copy(s.onnx, "out"), "--repo-id", "me/tiny-uner", "--dry-run"], 1, "recipe"),
    Case("push-malformed-repo-id", uner_export, lambda s: ["push", s.recipe_output(), "--repo-id", "me/tiny uner/x", "--dry-run"], 1, "me/tiny uner/x"),
    Case("push-index-file-outside-the-folder", uner_export, lambda s: ["push", _index_naming_outside(s), "--repo-id", "me/tiny-uner", "--dry-run"],
         1, "../outside.gguf"),
    # -- uner pull ------------------------------------------------------------------------
    Case("pull-malformed-repo-id", uner, lambda s: ["pull", "me/tiny uner/x", "--variant", "q8_0"], 1, "me/tiny uner/x"),
    Case("pull-unreachable-endpoint", uner, lambda s: ["pull", "me/tiny-uner", "--variant", "q8_0"], 1, CLOSED_PORT),
]


def _hide_cuda(s: Scene) -> None:
    """The case is "onnxruntime without CUDA": on an install that has it, hide it."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        s.monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [p for p in available if p not in ("CUDAExecutionProvider", "TensorrtExecutionProvider")])


def _resumed_with_other_labels(s: Scene) -> list:
    docs, out = s.jsonl("docs.jsonl", {"id": "a", "text": "Barack Obama visited Paris."}), s.tmp / "out.jsonl"
    s.succeed(uner, ["extract", "-m", s.gguf, "-l", "person", "-i", docs, "-o", out, *SHORT, "-q"])
    return ["extract", "-m", s.gguf, "-l", "location", "-i", docs, "-o", out, *SHORT]


def _bio(s: Scene) -> Path:
    return s.file("test.bio", "O\tshow\nO\tme\nB-ACTOR\tbruce\nI-ACTOR\twillis\n")


def _bench(s: Scene, data: Path, *extra, reference: Path | None = None) -> list:
    return ["bench", "-r", reference or s.hf, "-d", data, "-o", s.tmp / "bench", "--no-baselines", "--max-new-tokens", "2", "--threads", "1", *extra]


def _recipe(s: Scene, text: str) -> Path:
    (s.tmp / "recipe").mkdir(exist_ok=True)
    return write_recipe(s.tmp / "recipe", s.hf, text.replace("{", "{{").replace("}", "}}").replace("{{source}}", "{source}"))


def _manifest_naming(s: Scene, name: str) -> Path:
    s.file("outside.txt", "not part of the export")
    return s.file("out/manifest.json", json.dumps({"files": {name: {"size": 22, "sha256": "0" * 64}}})).parent


def _tampered(folder: Path) -> Path:
    data = folder / "model.onnx.data"
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same size: only the sha256 tells
    data.write_bytes(bytes(content))
    return folder


def _index_naming_outside(s: Scene) -> Path:
    """A recipe output whose index names one passed variant's file as ``../outside.gguf``,
    the file moved there: a push that followed the name would upload a file beside the folder."""
    out = s.recipe_output()
    index = json.loads((out / "manifest.json").read_text())
    name = index["variants"]["q8_0"]["files"][0]
    shutil.move(out / name, s.tmp / "outside.gguf")
    index["files"]["../outside.gguf"] = index["files"].pop(name)
    index["variants"]["q8_0"]["files"] = ["../outside.gguf"]
    index["variants"]["q8_0"]["status"] = "passed"
    (out / "manifest.json").write_text(json.dumps(index, indent=2))
    return out


@pytest.fixture
def scene(tmp_path, request, monkeypatch, capsys) -> Scene:
    folder = tmp_path / "case"
    folder.mkdir()
    return Scene(folder, request, monkeypatch, capsys)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_bad_input_is_one_error_line_and_leaves_nothing_behind(case: Case, scene: Scene, capsys, caplog):
    argv = case.argv(scene)
    capsys.readouterr()  # what building the scene printed is not the case's output
    caplog.clear()
    before = _listing(scene.tmp)
    code, out, err = run(case.main, argv, capsys)
    assert_failed_cleanly(code, out, err, caplog.text, case.code, case.says, case.stdout)
    assert not any(record.exc_info for record in caplog.records), caplog.text  # a logged traceback
    after = _listing(scene.tmp)
    assert after == before, f"the run changed {sorted(set(after.items()) ^ set(before.items()))}"


def test_ids_are_distinct_and_there_are_at_least_forty():
    ids = [case.id for case in CASES]
    assert len(set(ids)) == len(ids) and len(ids) + 1 >= 40  # + the corpus case below


# -- the one bad input that is not an error: a document among good ones ---------------------


def test_a_lone_surrogate_in_a_corpus_document_skips_that_document_only(scene: Scene, capsys, caplog):
    docs = scene.file("docs.jsonl", '{"id": "a", "text": "Barack Obama visited Paris."}\n'
                                    '{"id": "b", "text": "a lone surrogate \\ud800 here"}\n'  # JSON's escape: a lone surrogate
                                    '{"id": "c", "text": "Angela Merkel lives in Berlin."}\n')
    out = scene.tmp / "out.jsonl"
    caplog.clear()
    code, stdout, err = run(uner, ["extract", "-m", scene.gguf, "-l", "person", "-i", docs, "-o", out, *SHORT], capsys)
    assert code == 0, err
    assert "Traceback" not in stdout + err + caplog.text and not stdout.strip()
    assert not [line for line in _stderr_lines(err) if line.startswith("Error")], err
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a", "c"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    skipped = [line for line in warnings if line.startswith("skipping")]
    assert len(skipped) == 1 and "line 2 (id 'b')" in skipped[0] and "lone surrogate" in skipped[0], warnings

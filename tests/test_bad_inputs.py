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
PARIS = ["-l", "person", "-t", "Paris."]
#: the command word -> the CLI it belongs to
COMMANDS = {
    "gguf": uner_export,
    "onnx": uner_export,
    "recipe": uner_export,
    "verify": uner_export,
    "push": uner_export,
    "extract": uner,
    "bench": uner,
    "pull": uner,
}


@pytest.fixture(autouse=True)
def _closed_hub_and_no_debug(monkeypatch, tmp_path_factory):
    """Every case talks to a Hub endpoint that refuses at once (never the real one), caches into
    a folder of its own and runs without ``UNER_DEBUG`` (which shows tracebacks on purpose).
    huggingface_hub reads its settings at import, so its constants are set too, as the
    environment would have set them in a fresh process."""
    from huggingface_hub import constants

    cache = str(tmp_path_factory.mktemp("hf-cache"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "UNER_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "HF_ENDPOINT": CLOSED_PORT,
        "HF_HUB_CACHE": cache,
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(name, value)
    for name, value in {
        "ENDPOINT": CLOSED_PORT,
        "HF_HUB_OFFLINE": False,
        "HF_HUB_CACHE": cache,
        "HUGGINGFACE_CO_URL_TEMPLATE": CLOSED_PORT + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_ETAG_TIMEOUT": 2,
        "HF_HUB_DOWNLOAD_TIMEOUT": 2,
    }.items():
        monkeypatch.setattr(constants, name, value)


# -- helpers ---------------------------------------------------------------------------------


class Scene:
    """What a case builds its bad input from: its own folder, and the session's tiny models
    (each built only when a case asks for it)."""

    def __init__(self, tmp: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
        self.tmp, self.monkeypatch = tmp, monkeypatch
        self._request, self._capfd = request, capfd

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
        return self.copy(self._request.getfixturevalue("tiny_export"), "export")

    def model(self, breakage: str | None = None) -> Path:
        """A copy of the tiny HF folder in the case's folder, broken as ``BREAKAGES`` says."""
        model = self.copy(self.hf, "model")
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

    def folder(self, name: str) -> Path:
        """A folder (not empty) where a file belongs."""
        return self.file(f"{name}/a.txt", "Paris.").parent

    def jsonl(self, name: str, *records: dict) -> Path:
        return self.file(name, "".join(json.dumps(record) + "\n" for record in records))

    def succeed(self, argv: list) -> None:
        """A run that must work: the state a case starts from (a first corpus run...)."""
        code, _, err = run(COMMANDS[argv[0]], argv, self._capfd)
        assert code == 0, err


def _edit_config(model: Path, **changes) -> None:
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **changes}))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _cut_tokenizer_json(model: Path) -> None:
    """The SentencePiece model gone and a tokenizer.json cut mid-file in its place."""
    (model / "tokenizer.model").unlink()
    (model / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {')


BREAKAGES: dict[str, Callable[[Path], object]] = {
    "config-not-json": lambda m: (m / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden'),
    "config-wrong-types": lambda m: _edit_config(m, hidden_size="sixty-four", num_hidden_layers=[2]),
    "not-llama": lambda m: _edit_config(m, architectures=["BertForMaskedLM"], model_type="bert"),
    "no-weights": lambda m: (m / "model.safetensors").unlink(),
    "truncated-weights": lambda m: _truncate(m / "model.safetensors"),
    "corrupt-weights-header": lambda m: (m / "model.safetensors").write_bytes(b"\xff" * 64),
    "broken-tokenizer-json": _cut_tokenizer_json,
}


def _listing(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder``: folders by name, files by size and modification time."""
    listing = {}
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        listing[path.relative_to(folder).as_posix()] = ("dir",) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return listing


def _stderr_lines(err: str) -> list[str]:
    """stderr's non-blank lines, without tqdm's progress bars (redrawn with ``\\r``)."""
    return [line for line in err.splitlines() if line.strip() and "%|" not in line and "it/s]" not in line]


def assert_failed_cleanly(code, out: str, err: str, logged: str, expected_code: int, says: str, stdout: str = ""):
    """The contract for a bad input (see the module docstring). ``says``: a fragment of the
    Error line; ``stdout``: a fragment of every stdout line ("": stdout stays empty)."""
    assert "Traceback" not in out + err + logged, err or logged
    assert code == expected_code, f"exit {code}, expected {expected_code}; stderr:\n{err}"
    lines = _stderr_lines(err)
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, f"expected one Error line, got {len(errors)}; stderr:\n{err}"
    # an error is that one line; a usage error adds typer's "Usage: ..." and "Try '... -h'" lines
    others = [line for line in lines if line not in errors]
    if expected_code == 2:
        others = [line for line in others if not line.startswith(("Usage: ", "Try "))]
    assert not others, f"stderr holds more than the Error line:\n{err}"
    assert says in errors[0], f"{says!r} not in {errors[0]!r}"
    if stdout:
        assert out.strip() and all(stdout in line for line in out.splitlines() if line.strip()), out
    else:
        assert not out.strip(), f"stdout of a failed run: {out!r}"


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Scene], list]  # builds the bad input in the scene's folder; the command line
    code: int  # 1: an error, 2: a usage error
    says: str  # a fragment of the Error line
    stdout: str = ""  # a fragment of every stdout line ("": stdout stays empty)

    def __str__(self) -> str:
        return self.id


def _export_cases(command: str) -> list[Case]:
    """The bad sources and outputs both exporters must refuse."""

    def export(s: Scene, source: Path, out: Path | None = None) -> list:
        return [command, source, "--out", out or s.tmp / "out"]

    def broken(breakage: str, says: str) -> Case:
        return Case(f"{command}-{breakage}", lambda s: export(s, s.model(breakage)), 1, says)

    def existing_output(s: Scene) -> list:
        if command == "gguf":
            s.file("out/model.F16.gguf", b"GGUF an earlier export")
        else:
            s.copy(s.onnx, "out")
        return export(s, s.model())

    return [
        Case(f"{command}-missing-source", lambda s: export(s, s.tmp / "nope"), 1, "does not exist"),
        # a file is there: the message says so (not "does not exist")
        Case(f"{command}-source-is-a-file", lambda s: export(s, s.file("weights.bin", b"\0" * 16)), 1, "file"),
        broken("config-not-json", "config.json"),
        broken("config-wrong-types", "hidden_size"),
        broken("not-llama", "BertForMaskedLM"),
        broken("no-weights", "safetensors"),
        broken("truncated-weights", "truncated or corrupt"),
        broken("corrupt-weights-header", "safetensors header"),
        broken("broken-tokenizer-json", "tokenizer.json"),
        Case(f"{command}-out-is-a-file", lambda s: export(s, s.model(), out=s.file("out", "a file")), 1, "out"),
        Case(f"{command}-existing-output-without-force", existing_output, 1, "--force"),
    ] + (
        # an ONNX export replaces its folder, so it must stand apart from the source; GGUF files may
        # go beside the source files (as llama.cpp's converter writes them), never over one of them
        # (tests/test_export_safety.py)
        [Case("onnx-out-inside-the-source", lambda s: export(s, s.model(), out=s.tmp / "model" / "out"), 1, "inside")]
        if command == "onnx"
        else []
    )


def _gguf(s: Scene, *extra) -> list:
    return ["gguf", s.model(), "--out", s.tmp / "out", *extra]


def _onnx(s: Scene, *extra) -> list:
    return ["onnx", s.model(), "--out", s.tmp / "out", *extra]


def _extract(model: Path | str, *extra) -> list:
    return ["extract", "-m", model, *SHORT, *extra]  # an option given twice: the last one counts


def _read(s: Scene, path: Path, *extra) -> list:
    """``extract --input path``: person entities of the texts in ``path``."""
    return _extract(s.gguf, "-l", "person", "-i", path, *extra)


def _missing_relative_gguf(s: Scene) -> list:
    s.monkeypatch.chdir(s.tmp)  # out/ does not exist here: a path, not a Hub repo "out/m.gguf"
    return _extract("out/m.gguf", *PARIS)


def _provider_cuda_without_cuda(s: Scene) -> list:
    """onnxruntime without CUDA: on an install that has it, it is hidden."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    cpu_only = [p for p in available if p not in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    s.monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: cpu_only)
    return _extract(s.onnx, *PARIS, "--provider", "cuda")


def _truncated_copy(source: Path, dest: Path) -> Path:
    dest.write_bytes(source.read_bytes()[: source.stat().st_size // 2])  # the header intact
    return dest


def _gguf_beside_a_broken_manifest(s: Scene) -> list:
    model = Path(shutil.copy(s.gguf, s.tmp / "model.gguf"))
    s.file("manifest.json", '{"files": ')
    return _extract(model, *PARIS)


def _garbage_onnx(s: Scene) -> list:
    """An ONNX folder that is not one of our exports (no manifest) with a model.onnx of noise."""
    folder = s.copy(s.onnx, "onnx")
    (folder / "manifest.json").unlink()
    (folder / "model.onnx").write_bytes(os.urandom(1024))
    return _extract(folder, *PARIS)


def _output_is_the_input(s: Scene) -> list:
    docs = s.jsonl("docs.jsonl", {"text": "Paris."})
    return _extract(s.gguf, "-l", "person", "-i", docs, "-o", docs)


def _resumed_with_other_labels(s: Scene) -> list:
    docs, out = s.jsonl("docs.jsonl", {"id": "a", "text": "Barack Obama visited Paris."}), s.tmp / "out.jsonl"
    s.succeed(_extract(s.gguf, "-l", "person", "-i", docs, "-o", out, "-q"))
    return _extract(s.gguf, "-l", "location", "-i", docs, "-o", out)


def _bio(s: Scene) -> Path:
    return s.file("test.bio", "O\tshow\nO\tme\nB-ACTOR\tbruce\nI-ACTOR\twillis\n")


def _bench(s: Scene, data: Path, *extra, reference: Path | None = None) -> list:
    return [
        "bench",
        "-r",
        reference or s.hf,
        "-d",
        data,
        "-o",
        s.tmp / "bench",
        "--no-baselines",
        "--max-new-tokens",
        "2",
        "--threads",
        "1",
        *extra,
    ]


def _recipe(s: Scene, text: str, *extra) -> list:
    """``uner-export recipe`` of ``text`` (a recipe of the tiny model) into ``out``."""
    (s.tmp / "recipe").mkdir()
    escaped = text.replace("{", "{{").replace("}", "}}").replace("{{source}}", "{source}")  # format() fills in {source}
    path = write_recipe(s.tmp / "recipe", s.hf, escaped)
    return ["recipe", path, "--out", s.tmp / "out", *extra]


def _recipe_without_data_dir(s: Scene) -> list:
    s.monkeypatch.delenv("UNER_DATA", raising=False)
    return _recipe(s, TINY_RECIPE)


def _manifest_naming_outside(s: Scene) -> list:
    s.file("outside.txt", "not part of the export")
    manifest = {"files": {"../outside.txt": {"size": 22, "sha256": "0" * 64}}}
    return ["verify", s.file("out/manifest.json", json.dumps(manifest)).parent]


def _tampered(s: Scene) -> Path:
    """A copy of the ONNX export with one byte of its weights flipped."""
    data = s.copy(s.onnx, "out") / "model.onnx.data"
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same size: only the sha256 tells
    data.write_bytes(bytes(content))
    return data.parent


def _index_naming_outside(s: Scene) -> Path:
    """A recipe output whose index names one passed variant's file ``../outside.gguf``, the
    file moved there: a push that followed the name would upload a file beside the folder."""
    out = s.recipe_output()
    index = json.loads((out / "manifest.json").read_text())
    name = index["variants"]["q8_0"]["files"][0]
    shutil.move(out / name, s.tmp / "outside.gguf")
    index["files"]["../outside.gguf"] = index["files"].pop(name)
    index["variants"]["q8_0"].update(files=["../outside.gguf"], status="passed")
    (out / "manifest.json").write_text(json.dumps(index, indent=2))
    return out


def _push(folder: Path, repo_id: str = "me/tiny-uner") -> list:
    return ["push", folder, "--repo-id", repo_id, "--dry-run"]


CASES: list[Case] = [
    # -- uner-export gguf / onnx ----------------------------------------------------------
    *_export_cases("gguf"),
    Case("gguf-unknown-quant", lambda s: _gguf(s, "--quant", "q8_0,q9_z"), 1, "q9_z"),
    Case("gguf-outtype-nonsense", lambda s: _gguf(s, "--outtype", "f12"), 2, "--outtype"),
    Case("gguf-threads-0", lambda s: _gguf(s, "--quant", "q8_0", "--threads", "0"), 2, "--threads"),
    Case("gguf-threads-100000", lambda s: _gguf(s, "--quant", "q8_0", "--threads", "100000"), 2, "--threads"),
    # a name is part of a file name: one with a path in it would write outside --out
    Case("gguf-name-with-a-path", lambda s: _gguf(s, "--name", "../evil"), 1, "--name"),
    *_export_cases("onnx"),
    Case("onnx-precision-nonsense", lambda s: _onnx(s, "--precision", "int3"), 2, "--precision"),
    Case("onnx-int4-on-tensorrt", lambda s: _onnx(s, "-p", "int4", "--device", "tensorrt"), 1, "tensorrt"),
    Case("onnx-block-size-7", lambda s: _onnx(s, "-p", "int4", "--block-size", "7"), 1, "--block-size"),
    # -- uner extract ---------------------------------------------------------------------
    Case("extract-missing-model", lambda s: _extract(s.tmp / "missing", *PARIS), 1, "does not exist"),
    Case("extract-missing-relative-gguf-path", _missing_relative_gguf, 1, "out/m.gguf"),
    Case("extract-random-bytes-x.gguf", lambda s: _extract(s.file("x.gguf", os.urandom(4096)), *PARIS), 1, "x.gguf"),
    Case("extract-truncated-gguf", lambda s: _extract(_truncated_copy(s.gguf, s.tmp / "m.gguf"), *PARIS), 1, "GGUF"),
    Case("extract-gguf-beside-a-broken-manifest", _gguf_beside_a_broken_manifest, 1, "manifest.json"),
    Case("extract-tampered-onnx", lambda s: _extract(_tampered(s), *PARIS), 1, "model.onnx.data"),
    Case("extract-garbage-onnx-without-manifest", _garbage_onnx, 1, "model.onnx"),
    Case("extract-empty-labels", lambda s: _extract(s.gguf, "-l", " , ", "-t", "x"), 1, "at least one entity label"),
    Case(
        "extract-labels-file-missing",
        lambda s: _extract(s.gguf, "--labels-file", s.tmp / "l.txt", "-t", "x"),
        1,
        "l.txt",
    ),
    Case(
        "extract-labels-file-empty",
        lambda s: _extract(s.gguf, "--labels-file", s.file("l.txt", "#\n\n"), "-t", "x"),
        1,
        "l.txt",
    ),
    Case("extract-input-missing", lambda s: _read(s, s.tmp / "docs.jsonl"), 1, "docs.jsonl"),
    Case("extract-input-empty", lambda s: _read(s, s.file("docs.txt", "\n  \n")), 1, "docs.txt"),
    Case("extract-input-not-utf8", lambda s: _read(s, s.file("docs.txt", "Café".encode("latin-1"))), 1, "UTF-8"),
    Case(
        "extract-input-invalid-jsonl", lambda s: _read(s, s.file("d.jsonl", '{"text": "a"}\n{"text": \n')), 1, "line 2"
    ),
    Case("extract-input-is-a-folder", lambda s: _read(s, s.folder("docs")), 1, "folder"),
    Case(
        "extract-corpus-input-is-a-folder", lambda s: _read(s, s.folder("docs"), "-o", s.tmp / "o.jsonl"), 1, "folder"
    ),
    Case("extract-output-is-the-input", _output_is_the_input, 1, "another file than --input"),
    Case(
        "extract-output-is-a-folder",
        lambda s: _read(s, s.jsonl("d.jsonl", {"text": "a"}), "-o", s.folder("out")),
        1,
        "folder",
    ),
    Case("extract-window-too-small", lambda s: _extract(s.gguf, *PARIS, "--window", "64"), 1, "window"),
    Case("extract-window-below-64", lambda s: _extract(s.gguf, *PARIS, "--window", "8"), 2, "--window"),
    Case(
        "extract-max-new-tokens-0", lambda s: _extract(s.gguf, *PARIS, "--max-new-tokens", "0"), 2, "--max-new-tokens"
    ),
    Case("extract-kv-cache-f32-on-onnx", lambda s: _extract(s.onnx, *PARIS, "--kv-cache", "f32"), 1, "kv_cache_type"),
    Case("extract-allow-pickle-on-gguf", lambda s: _extract(s.gguf, *PARIS, "--allow-pickle"), 1, "allow_pickle"),
    Case("extract-provider-cuda-without-cuda", _provider_cuda_without_cuda, 1, "cuda"),
    # argv decoded with surrogateescape: a byte that is not UTF-8 arrives as a lone surrogate
    Case(
        "extract-lone-surrogate-in-text",
        lambda s: _extract(s.gguf, "-l", "person", "-t", os.fsdecode(b"caf\xff")),
        1,
        "lone surrogate",
    ),
    Case(
        "extract-lone-surrogate-in-label",
        lambda s: _extract(s.gguf, "-l", os.fsdecode(b"per\xffson"), "-t", "x"),
        1,
        "label",
    ),
    Case("extract-resume-with-other-labels", _resumed_with_other_labels, 1, "labels (person there, location now)"),
    # -- uner bench -----------------------------------------------------------------------
    Case("bench-missing-data", lambda s: _bench(s, s.tmp / "test.bio"), 1, "does not exist"),
    Case("bench-empty-eval-file", lambda s: _bench(s, s.file("eval.json", "[]")), 1, "empty list"),
    Case("bench-data-not-json", lambda s: _bench(s, s.file("eval.json", "this is not JSON\n")), 1, "eval.json"),
    Case(
        "bench-data-not-bio", lambda s: _bench(s, s.file("notes.txt", "Dear diary,\ntoday was long.\n")), 1, "notes.txt"
    ),
    Case(
        "bench-data-binary",
        lambda s: _bench(s, s.file("test.bio", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))),
        1,
        "test.bio",
    ),
    Case("bench-reference-is-a-gguf", lambda s: _bench(s, _bio(s), reference=s.gguf), 1, "--reference"),
    Case("bench-candidate-missing", lambda s: _bench(s, _bio(s), "-c", s.tmp / "nope.gguf"), 1, "nope.gguf"),
    Case("bench-limit-0", lambda s: _bench(s, _bio(s), "--limit", "0"), 1, "--limit"),
    Case("bench-constrain-nonsense", lambda s: _bench(s, _bio(s), "--constrain", "regex"), 1, "regex"),
    Case("bench-out-is-a-file", lambda s: [*_bench(s, _bio(s)), "-o", s.file("bench", "a file")], 1, "folder"),
    # -- uner-export recipe ---------------------------------------------------------------
    Case("recipe-unknown-name", lambda s: ["recipe", "UniNER-9B-nope", "--out", s.tmp / "out"], 1, "UniNER-9B-nope"),
    Case("recipe-toml-syntax-error", lambda s: _recipe(s, 'name = "tiny\n'), 1, "TOML"),
    Case("recipe-unknown-top-level-key", lambda s: _recipe(s, 'colour = "blue"\n' + TINY_RECIPE), 1, "colour"),
    # a typo inside a table: refused on load, as at the top level (--no-bench keeps the run
    # short were it accepted)
    Case(
        "recipe-unknown-key-in-a-table",
        lambda s: _recipe(s, TINY_RECIPE.replace("limit =", "limt ="), "--no-bench"),
        1,
        "limt",
    ),
    Case(
        "recipe-data-dir-without-the-data",
        lambda s: _recipe(s, TINY_RECIPE, "--data-dir", s.folder("data")),
        1,
        "CrossNER_AI.json",
    ),
    Case("recipe-no-data-dir", _recipe_without_data_dir, 1, "--data-dir"),
    # -- uner-export verify ---------------------------------------------------------------
    Case("verify-no-manifest", lambda s: ["verify", s.file("out/model.gguf", b"GGUF").parent], 1, "no manifest"),
    Case("verify-path-is-a-file", lambda s: ["verify", s.file("model.gguf", b"GGUF")], 1, "file"),
    Case("verify-manifest-not-json", lambda s: ["verify", s.file("out/manifest.json", '{"files": ').parent], 1, "JSON"),
    Case("verify-manifest-names-a-file-outside", _manifest_naming_outside, 1, "../outside.txt"),
    Case("verify-a-tampered-file", lambda s: ["verify", _tampered(s)], 1, "differ", stdout="MISMATCH"),
    # -- uner-export push --dry-run -------------------------------------------------------
    Case("push-not-a-recipe-output", lambda s: _push(s.copy(s.onnx, "out")), 1, "recipe"),
    Case("push-malformed-repo-id", lambda s: _push(s.recipe_output(), "me/tiny uner/x"), 1, "me/tiny uner/x"),
    Case("push-index-file-outside-the-folder", lambda s: _push(_index_naming_outside(s)), 1, "../outside.gguf"),
    # -- uner pull ------------------------------------------------------------------------
    Case("pull-malformed-repo-id", lambda s: ["pull", "me/tiny uner/x", "--variant", "q8_0"], 1, "me/tiny uner/x"),
    Case("pull-unreachable-endpoint", lambda s: ["pull", "me/tiny-uner", "--variant", "q8_0"], 1, CLOSED_PORT),
]


@pytest.fixture
def scene(tmp_path, request, monkeypatch, capfd) -> Scene:
    return Scene(tmp_path, request, monkeypatch, capfd)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_bad_input_is_one_error_line_and_leaves_nothing_behind(case: Case, scene: Scene, capfd, caplog):
    # capfd, not capsys: what llama.cpp or onnxruntime write to the file descriptors counts too
    argv = case.argv(scene)
    capfd.readouterr()  # what building the scene printed is not the case's output
    caplog.clear()
    before = _listing(scene.tmp)
    code, out, err = run(COMMANDS[argv[0]], argv, capfd)
    assert_failed_cleanly(code, out, err, caplog.text, case.code, case.says, case.stdout)
    assert not any(record.exc_info for record in caplog.records), caplog.text  # a traceback, logged
    after = _listing(scene.tmp)
    assert after == before, f"the run changed {sorted(set(after.items()) ^ set(before.items()))}"


def test_the_table_has_forty_distinct_cases_or_more():
    ids = [case.id for case in CASES]
    assert len(set(ids)) == len(ids) and len(ids) >= 40


# -- the one bad input that is not an error: a bad document among good ones -----------------


def test_a_lone_surrogate_in_a_corpus_document_skips_that_document_only(scene: Scene, capfd, caplog):
    docs = scene.file(
        "docs.jsonl",
        '{"id": "a", "text": "Barack Obama visited Paris."}\n'
        '{"id": "b", "text": "a lone \\ud800 here"}\n'  # JSON's escape: a lone surrogate
        '{"id": "c", "text": "Angela Merkel lives in Berlin."}\n',
    )
    out = scene.tmp / "out.jsonl"
    caplog.clear()
    code, stdout, err = run(uner, _extract(scene.gguf, "-l", "person", "-i", docs, "-o", out), capfd)
    assert code == 0, err
    assert "Traceback" not in stdout + err + caplog.text and not stdout.strip()
    assert not [line for line in _stderr_lines(err) if line.startswith("Error")], err
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a", "c"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    skipped = [line for line in warnings if line.startswith("skipping")]
    assert len(skipped) == 1 and "line 2 (id 'b')" in skipped[0] and "lone surrogate" in skipped[0], warnings

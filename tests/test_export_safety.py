"""``uner-export`` never loses data, never leaves a broken artifact behind exit 0, never shows a
traceback for a bad checkpoint, and cleans up after runs that were killed."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from uner.errors import InputError
from uner.manifest import verify_folder
from uner.toolkit.cli import main as uner_export

STALE = time.time() - 3600  # an hour ago: long before any run of these tests started


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        uner_export([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("Error:")]


def assert_one_line_error(code, err, fragment, exit_code=1):
    assert code == exit_code, err
    assert "Traceback" not in err, err
    if exit_code == 1:  # usage errors (exit 2) print typer's usage lines above the error
        assert [line for line in err.splitlines() if line.strip() and "%|" not in line] == error_lines(err), err
    assert len(error_lines(err)) == 1 and fragment in error_lines(err)[0], err


def copy_model(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def edit_config(model: Path, **changes) -> None:
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **changes}))


def snapshot(folder: Path) -> dict[str, bytes] | None:
    """Every file of ``folder`` (not hidden ones) and its bytes; None when there is no folder."""
    if not folder.is_dir():
        return None
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def tree(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def sharded_hf(tiny_spm_hf, tmp_path_factory) -> Path:
    """The tiny model saved as three safetensors shards with model.safetensors.index.json."""
    from transformers import LlamaForCausalLM

    dest = tmp_path_factory.mktemp("sharded") / "tiny-sharded"
    LlamaForCausalLM.from_pretrained(tiny_spm_hf).save_pretrained(dest, max_shard_size="3MB")
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(tiny_spm_hf / name, dest / name)
    assert len(json.loads((dest / "model.safetensors.index.json").read_text())["weight_map"]) > 0
    assert len(list(dest.glob("model-*.safetensors"))) == 3
    return dest


# -- 1. --force replaces only what the exporter owns; never the source ----------------------


def test_onnx_force_replaces_only_the_exports_own_files_and_keeps_everything_else(tiny_spm_hf, tmp_path, capsys):
    out = tmp_path / "shared"
    code, _, err = run(["onnx", tiny_spm_hf, "--out", out, "-p", "fp32", "-q"], capsys)
    assert code == 0, err
    # the user keeps other things in the folder; and a file the previous export listed
    (out / "notes.txt").write_text("my notes")
    (out / "model.Q4_K_M.gguf").write_bytes(b"GGUF a model from elsewhere")
    (out / "runs").mkdir()
    (out / "runs" / "log.txt").write_text("keep")
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "old_only.bin").write_bytes(b"from an older exporter")
    manifest["files"]["old_only.bin"] = {"size": 22, "sha256": "0" * 64}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "model.onnx.data").write_bytes(b"damaged")

    code, stdout, err = run(["onnx", tiny_spm_hf, "--out", out, "-p", "fp32", "--force", "-q"], capsys)
    assert code == 0, err
    assert stdout.split() == [str(out)]
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "model.Q4_K_M.gguf").read_bytes() == b"GGUF a model from elsewhere"
    assert (out / "runs" / "log.txt").read_text() == "keep"
    assert not (out / "old_only.bin").exists()  # owned by the previous export, not made by this one
    assert verify_folder(out) == []
    assert set(json.loads((out / "manifest.json").read_text())["files"]) >= {"model.onnx", "model.onnx.data"}
    assert not list(tmp_path.glob(".*partial"))


def test_onnx_force_into_the_current_directory_keeps_its_files(tiny_spm_hf, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("my notes")
    monkeypatch.chdir(work)
    code, _, err = run(["onnx", tiny_spm_hf, "--out", ".", "-p", "fp32", "--force", "-q"], capsys)
    assert code == 0, err
    assert (work / "notes.txt").read_text() == "my notes"
    assert verify_folder(work) == []
    assert not [p for p in work.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize("where", ["the source", "inside the source", "around the source"])
def test_onnx_output_folder_overlapping_the_source_is_refused_before_any_work(tiny_spm_hf, tmp_path, capsys, where):
    model = copy_model(tiny_spm_hf, tmp_path / "work" / "model")
    out = {"the source": model, "inside the source": model / "onnx", "around the source": tmp_path / "work"}[where]
    before = tree(tmp_path)
    code, _, err = run(["onnx", model, "--out", out, "-p", "fp32", "--force", "-q"], capsys)
    assert_one_line_error(code, err, "expected an output folder apart from the source folder")
    assert tree(tmp_path) == before


def test_onnx_output_folder_overlapping_the_adapter_is_refused(tiny_spm_hf, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    before = tree(tmp_path)
    argv = ["onnx", tiny_spm_hf, "--out", adapter, "--adapter", adapter, "-p", "fp32", "--force", "-q"]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "apart from the adapter folder")
    assert tree(tmp_path) == before


def test_gguf_output_that_would_overwrite_a_file_of_the_source_is_refused(tiny_spm_hf, tmp_path, capsys):
    model = copy_model(tiny_spm_hf, tmp_path / "tiny")
    shipped = model / "tiny.F16.gguf"  # some repos ship a GGUF beside the HF weights
    shipped.write_bytes(b"GGUF shipped with the checkpoint")
    code, _, err = run(["gguf", model, "--out", model, "--force", "-q"], capsys)
    assert_one_line_error(code, err, "would overwrite a file of the source folder")
    assert shipped.read_bytes() == b"GGUF shipped with the checkpoint"
    assert not (model / "manifest.json").exists()
    # beside the source files is fine, and so is replacing what our own manifest lists there
    for _ in range(2):
        code, _, err = run(["gguf", model, "--out", model, "--outtype", "f32", "--force", "-q"], capsys)
        assert code == 0, err
    assert (model / "tiny.F32.gguf").read_bytes()[:4] == b"GGUF" and verify_folder(model) == []


def test_onnx_force_refuses_a_folder_holding_a_gguf_export(tiny_spm_hf, tmp_path, capsys):
    code, _, err = run(["gguf", tiny_spm_hf, "--out", tmp_path / "out", "--outtype", "f32", "-q"], capsys)
    assert code == 0, err
    before = tree(tmp_path / "out")
    code, _, err = run(["onnx", tiny_spm_hf, "--out", tmp_path / "out", "-p", "fp32", "--force", "-q"], capsys)
    assert_one_line_error(code, err, "got a 'gguf' manifest")
    assert tree(tmp_path / "out") == before


@pytest.mark.parametrize("manifest", ['{"format": "onnx", "files": {}}', "{not json"])
def test_gguf_export_refuses_to_rewrite_another_or_an_unreadable_manifest(tiny_spm_hf, tmp_path, capsys, manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(manifest)
    code, _, err = run(["gguf", tiny_spm_hf, "--out", out, "--outtype", "f32", "--force", "-q"], capsys)
    assert_one_line_error(code, err, "manifest.json")
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert (out / "manifest.json").read_text() == manifest


# -- 1b. an interrupted replacement leaves the old export or the new one ---------------------


def _fake_builder(data: bytes, extra: str | None = None):
    """Stands in for onnxruntime-genai's builder: a valid tiny graph, weights ``data``."""

    def build(checkpoint, out, precision, device, progress):
        import onnx
        from onnx import TensorProto, helper

        out.mkdir(parents=True, exist_ok=True)
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [io[0]], [io[1]])
        onnx.save(helper.make_model(graph), out / "model.onnx")
        (out / "model.onnx.data").write_bytes(data)
        (out / "genai_config.json").write_text('{"model": {"decoder": {"filename": "model.onnx"}}}')
        if extra:
            (out / extra).write_bytes(b"only in this version")

    return build


class Interrupted(BaseException):
    """A kill at one step of the replacement (BaseException, as KeyboardInterrupt is)."""


def _interrupt_at(monkeypatch, step: int) -> list[int]:
    """Make the ``step``-th file-system change of the export raise :class:`Interrupted`."""
    import uner.toolkit.files as files

    calls = [0]

    def counted(real):
        def change(*args, **kwargs):
            calls[0] += 1
            if calls[0] == step:
                raise Interrupted
            return real(*args, **kwargs)

        return change

    monkeypatch.setattr(os, "replace", counted(os.replace))
    monkeypatch.setattr(os, "rename", counted(os.rename))
    for name in ("exchange_paths", "_remove"):
        if hasattr(files, name):
            monkeypatch.setattr(files, name, counted(getattr(files, name)))
    return calls


def _export(monkeypatch, source, out, data, extra=None, step=None):
    """A forced fake export of ``source`` to ``out``; True when it was interrupted."""
    from uner.toolkit import export_onnx as module

    with monkeypatch.context() as patch:
        patch.setattr(module, "_run_builder", _fake_builder(data, extra))
        if step is not None:
            _interrupt_at(patch, step)
        try:
            module.export_onnx(source, out, "fp32", force=True, progress=False)
        except Interrupted:
            return True
    return False


def test_interrupted_force_export_leaves_the_old_or_the_new_folder(tiny_spm_hf, tmp_path, monkeypatch):
    out = tmp_path / "onnx"
    _export(monkeypatch, tiny_spm_hf, tmp_path / "new", b"new weights")
    new = snapshot(tmp_path / "new")
    for step in range(1, 60):
        shutil.rmtree(out, ignore_errors=True)
        _export(monkeypatch, tiny_spm_hf, out, b"old weights", extra="old_only.bin")
        old = snapshot(out)
        interrupted = _export(monkeypatch, tiny_spm_hf, out, b"new weights", step=step)
        assert snapshot(out) in (old, new), f"interrupted at step {step}: neither the old nor the new export"
        if not interrupted:
            break
    assert snapshot(out) == new and verify_folder(out) == []


def test_interrupted_force_export_into_a_shared_folder_never_looks_finished_half_done(
    tiny_spm_hf, tmp_path, monkeypatch
):
    out = tmp_path / "shared"
    _export(monkeypatch, tiny_spm_hf, tmp_path / "new", b"new weights")
    new = snapshot(tmp_path / "new")
    for step in range(1, 60):
        shutil.rmtree(out, ignore_errors=True)
        _export(monkeypatch, tiny_spm_hf, out, b"old weights", extra="old_only.bin")
        old = snapshot(out)
        (out / "notes.txt").write_text("my notes")
        interrupted = _export(monkeypatch, tiny_spm_hf, out, b"new weights", step=step)
        assert (out / "notes.txt").read_text() == "my notes", f"interrupted at step {step}"
        state = {k: v for k, v in snapshot(out).items() if k != "notes.txt"}
        # a half-replaced folder keeps a manifest its files fail: loading refuses it
        assert state in (old, new) or verify_folder(out) != [], f"step {step}: a half export that verifies"
        assert "manifest.json" in state
        if not interrupted:
            break
    assert {k: v for k, v in snapshot(out).items() if k != "notes.txt"} == new and verify_folder(out) == []


# -- 2. incomplete checkpoints are refused before anything is written ------------------------


def _drop_tensor(model: Path, name: str) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    del tensors[name]
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("command", ["gguf", "onnx"])
@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        ("missing_shard", "got 1 missing: model-00002-of-00003.safetensors"),
        ("config_says_3_layers", "expected every tensor of the 3 layers config.json declares"),
        ("missing_norm", "got 1 missing: model.layers.1.post_attention_layernorm.weight"),
        ("missing_lm_head", "got 1 missing: lm_head.weight"),
    ],
)
def test_incomplete_checkpoints_are_refused_before_writing_anything(
    tiny_spm_hf, sharded_hf, tmp_path, capsys, command, breakage, fragment
):
    model = copy_model(sharded_hf if breakage == "missing_shard" else tiny_spm_hf, tmp_path / "model")
    if breakage == "missing_shard":
        (model / "model-00002-of-00003.safetensors").unlink()
    elif breakage == "config_says_3_layers":
        edit_config(model, num_hidden_layers=3)
    elif breakage == "missing_norm":
        _drop_tensor(model, "model.layers.1.post_attention_layernorm.weight")
    elif breakage == "missing_lm_head":
        _drop_tensor(model, "lm_head.weight")
    kind = ["-p", "fp32"] if command == "onnx" else ["--outtype", "f32"]
    code, _, err = run([command, model, "--out", tmp_path / "out", *kind, "-q"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _pickled_shards(source: Path, dest: Path) -> Path:
    """``source`` as two pytorch_model-*.bin shards with pytorch_model.bin.index.json (as UniNER ships)."""
    import torch
    from transformers import LlamaForCausalLM

    dest.mkdir()
    model = LlamaForCausalLM.from_pretrained(source)
    model.config.save_pretrained(dest)
    state = model.state_dict()
    names = sorted(state)
    shards = {
        "pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
        "pytorch_model-00002-of-00002.bin": names[len(names) // 2 :],
    }
    for shard, members in shards.items():
        torch.save({n: state[n].clone() for n in members}, dest / shard)
    weight_map = {n: shard for shard, members in shards.items() for n in members}
    (dest / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(source / name, dest / name)
    return dest


@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        ("missing_shard", "got 1 missing: pytorch_model-00002-of-00002.bin"),
        ("shard_lacks_what_the_index_lists", "got 1 missing: model.norm.weight"),
    ],
)
def test_pickled_shards_are_checked_against_their_index_and_their_contents(
    tiny_spm_hf, tmp_path, capsys, breakage, fragment
):
    import torch

    model = _pickled_shards(tiny_spm_hf, tmp_path / "model")
    weight_map = json.loads((model / "pytorch_model.bin.index.json").read_text())["weight_map"]
    if breakage == "missing_shard":
        (model / "pytorch_model-00002-of-00002.bin").unlink()
    else:
        shard = model / weight_map["model.norm.weight"]
        state = torch.load(shard, weights_only=True)
        del state["model.norm.weight"]
        torch.save(state, shard)
    code, _, err = run(["gguf", model, "--out", tmp_path / "out", "--outtype", "f32", "--allow-pickle", "-q"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


# -- 3. a corrupt source is one line on stderr, for both exporters ---------------------------


def _rewrite_header(weights: Path, edit) -> None:
    import struct

    raw = weights.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = edit(json.loads(raw[8 : 8 + length]))
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    weights.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length :])


def _first_tensor(header: dict) -> str:
    return next(name for name in header if name != "__metadata__")


def _break(model: Path, breakage: str) -> None:
    weights = model / "model.safetensors"
    if breakage == "header_not_an_object":
        _rewrite_header(weights, lambda header: [header])
    elif breakage == "offsets_not_numbers":
        _rewrite_header(weights, lambda h: {**h, _first_tensor(h): {**h[_first_tensor(h)], "data_offsets": ["a", "b"]}})
    elif breakage == "shape_not_numbers":
        _rewrite_header(weights, lambda h: {**h, _first_tensor(h): {**h[_first_tensor(h)], "shape": ["x", 2]}})
    elif breakage == "layers_a_word":
        edit_config(model, num_hidden_layers="two")
    elif breakage == "hidden_size_null":
        edit_config(model, hidden_size=None)
    elif breakage == "tie_embeddings_a_string":
        edit_config(model, tie_word_embeddings="false")
    elif breakage == "rope_scaling_a_string":
        edit_config(model, rope_scaling="linear")
    elif breakage == "config_a_list":
        (model / "config.json").write_text("[]")
    elif breakage == "tokenizer_json_invalid":
        (model / "tokenizer.json").write_text('{"model": {"type": "BPE", ')
    elif breakage == "tokenizer_model_garbage":
        (model / "tokenizer.model").write_bytes(b"\x00garbage" * 100)


@pytest.mark.parametrize("command", ["gguf", "onnx"])
@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        ("header_not_an_object", "expected a JSON object as the safetensors header of model.safetensors, got a list"),
        ("offsets_not_numbers", "expected dtype/shape/data_offsets"),
        ("shape_not_numbers", "expected dtype/shape/data_offsets"),
        ("layers_a_word", "expected a positive integer num_hidden_layers in config.json, got 'two'"),
        ("hidden_size_null", "expected hidden_size in config.json, got null"),
        ("tie_embeddings_a_string", "expected true or false for tie_word_embeddings in config.json, got 'false'"),
        ("rope_scaling_a_string", "expected rope_scaling to be an object in config.json, got 'linear'"),
        ("config_a_list", "expected a JSON object in"),
        ("tokenizer_json_invalid", "tokenizer.json, got: Expecting"),
    ],
)
def test_corrupt_sources_are_one_line_errors_and_write_nothing(
    tiny_spm_hf, tmp_path, capsys, command, breakage, fragment
):
    model = copy_model(tiny_spm_hf, tmp_path / "model")
    _break(model, breakage)
    code, _, err = run([command, model, "--out", tmp_path / "out", "-q"], capsys)
    assert_one_line_error(code, err, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        ("tokenizer_model_garbage", "expected a SentencePiece model in"),
        ("bpe_tokenizer_json_without_vocab", "tokenizer.json, got one without a readable vocab"),
    ],
)
def test_unreadable_tokenizer_files_are_one_line_errors(tiny_spm_hf, tmp_path, capsys, breakage, fragment):
    model = copy_model(tiny_spm_hf, tmp_path / "model")
    if breakage == "tokenizer_model_garbage":
        _break(model, breakage)
    else:  # a byte-level BPE model (as SmolLM2's) whose tokenizer.json lacks its vocabulary
        (model / "tokenizer.model").unlink()
        (model / "tokenizer.json").write_text('{"model": {"type": "BPE", "merges": []}}')
    code, _, err = run(["gguf", model, "--out", tmp_path / "out", "-q"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_unreadable_adapter_config_is_a_one_line_error(tiny_spm_hf, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{peft")
    code, _, err = run(["gguf", tiny_spm_hf, "--out", tmp_path / "out", "--adapter", adapter, "-q"], capsys)
    assert_one_line_error(code, err, "adapter_config.json, got: Expecting")
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


# -- 4. leftovers of killed runs go with the next successful export ---------------------------


def _leftover(folder: Path, name: str, mtime: float = STALE, is_dir: bool = False) -> Path:
    path = folder / name
    if is_dir:
        path.mkdir()
        (path / "model.onnx.data").write_bytes(b"x" * 1000)
        os.utime(path / "model.onnx.data", (mtime, mtime))
    else:
        path.write_bytes(b"x" * 1000)
    os.utime(path, (mtime, mtime))
    return path


def test_successful_gguf_export_removes_leftovers_of_killed_runs_of_its_outputs(tiny_spm_hf, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    ours = [
        _leftover(out, ".tiny-spm-llama.F32.gguf.k1ll3d_a.partial"),
        _leftover(out, ".tiny-spm-llama.Q8_0.gguf.k1ll3d_b.partial"),
        _leftover(out, ".manifest.json.k1ll3d_c.partial"),
        _leftover(out, ".tiny-spm-llama.merge-k1ll3d_d.partial", is_dir=True),
    ]
    kept = [
        _leftover(out, ".other-model.F32.gguf.k1ll3d_e.partial"),  # another output's: not ours to judge
        _leftover(out, ".notes.partial"),  # not a name tempfile made
        _leftover(out, ".tiny-spm-llama.Q4_0.gguf.k1ll3d_f.partial"),  # an output this run does not write
        _leftover(out, ".tiny-spm-llama.F32.gguf.wr1t1ng_.partial", mtime=time.time() + 3600),  # still being written
    ]
    code, _, err = run(["gguf", tiny_spm_hf, "--out", out, "--outtype", "f32", "--quant", "q8_0", "-q"], capsys)
    assert code == 0, err
    assert [p for p in ours if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
    # and a forced rerun cleans up too
    ours = [_leftover(out, ".tiny-spm-llama.F32.gguf.k1ll3d_g.partial")]
    code, _, err = run(["gguf", tiny_spm_hf, "--out", out, "--outtype", "f32", "--force", "-q"], capsys)
    assert code == 0, err
    assert [p for p in ours if p.exists()] == []


def test_successful_onnx_export_removes_build_folders_of_killed_runs(tiny_spm_hf, tmp_path, capsys):
    ours = [
        _leftover(tmp_path, ".onnx.k1ll3d_a.partial", is_dir=True),
        _leftover(tmp_path, ".onnx.merge-k1ll3d_b.partial", is_dir=True),
    ]
    kept = [
        _leftover(tmp_path, ".other.k1ll3d_c.partial", is_dir=True),  # another output folder's
        _leftover(tmp_path, ".onnx.wr1t1ng_.partial", mtime=time.time() + 3600, is_dir=True),  # in use
    ]
    code, _, err = run(["onnx", tiny_spm_hf, "--out", tmp_path / "onnx", "-p", "fp32", "-q"], capsys)
    assert code == 0, err
    assert [p for p in ours if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []


# -- 5. --threads is bounded --------------------------------------------------------------------


def test_gguf_threads_above_the_limit_are_refused_before_any_work(tiny_spm_hf, tmp_path, capsys):
    from uner.checks import MAX_THREADS

    argv = ["gguf", tiny_spm_hf, "--out", tmp_path / "out", "--quant", "q8_0", "--threads", MAX_THREADS + 1]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, str(MAX_THREADS), exit_code=2)
    assert not (tmp_path / "out").exists()


def test_export_gguf_ladder_refuses_threads_above_the_limit_before_any_work(tiny_spm_hf, tmp_path):
    from uner.checks import MAX_THREADS
    from uner.toolkit import export_gguf_ladder

    with pytest.raises(InputError, match=f"between 1 and {MAX_THREADS}"):
        export_gguf_ladder(tiny_spm_hf, tmp_path / "out", "f32", "q8_0", n_threads=MAX_THREADS + 1, progress=False)
    assert not (tmp_path / "out").exists()

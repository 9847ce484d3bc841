"""Importance matrices: measured on UniNER conversations, written in llama.cpp's GGUF imatrix
format, and weighed in by the quantizer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import DATA
from tests.test_cli import assert_one_line_error, run
from uner.manifest import sha256_file
from uner.toolkit.calibration import calibration_sequences
from uner.toolkit.cli import main as uner_export
from uner.toolkit.imatrix import collect, read_imatrix, write_imatrix
from uner.toolkit.quantize import quantize_gguf

TRAIN = [DATA / "crossner_ai" / "train.txt", DATA / "mit_movie" / "engtrain.bio"]
LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@pytest.fixture(scope="module")
def tiny_imatrix(tiny_spm_hf, tmp_path_factory):
    matrix = collect(tiny_spm_hf, TRAIN, tokens=2_000, n_threads=1, progress=False)
    return matrix, write_imatrix(tmp_path_factory.mktemp("imatrix") / "imatrix.gguf", matrix)


def _chars(text: str) -> list[int]:
    return [ord(c) for c in text]


@pytest.fixture
def bio_file(tmp_path):
    path = tmp_path / "train.bio"
    path.write_text("O\tshow\nO\tme\nB-ACTOR\tbruce\nI-ACTOR\twillis\nO\tmovies\n\nB-YEAR\t1999\nO\tfilms\n")
    return path


def test_a_calibration_conversation_asks_every_type_and_answers_with_the_gold_mentions(bio_file):
    sequences = list(calibration_sequences([bio_file], _chars, eos_id=0, bos_id=None, tokens=10_000))
    texts = ["".join(chr(i) if i else "</s>" for i in ids) for ids in sequences]
    first = next(t for t in texts if "bruce willis" in t)
    assert 'What describes actor in the text? ASSISTANT: ["bruce willis"]</s>' in first
    assert "What describes year in the text? ASSISTANT: []</s>" in first  # the absent type, answered []
    assert len(texts) == 2  # one conversation per passage


def test_plain_calibration_is_the_passages_alone(bio_file):
    sequences = calibration_sequences([bio_file], _chars, eos_id=0, bos_id=1, tokens=10_000, mode="plain")
    assert sorted("".join(map(chr, ids[1:])) for ids in sequences) == ["1999 films", "show me bruce willis movies"]


def test_the_imatrix_file_is_llama_cpp_gguf_imatrix_read_back_by_gguf_py(tiny_imatrix):
    import gguf

    matrix, path = tiny_imatrix
    reader = gguf.GGUFReader(path)
    assert reader.get_field("general.type").contents() == "imatrix"
    assert reader.get_field("general.architecture") is None  # llama.cpp writes none
    assert reader.get_field("imatrix.datasets").contents() == ["train.txt", "engtrain.bio"]
    assert reader.get_field("imatrix.chunk_count").contents() == matrix.chunks > 0
    tensors = {t.name: t for t in reader.tensors}
    expected = {f"blk.{layer}.{part}.weight" for layer in range(2) for part in LINEARS} | {"output.weight"}
    assert set(tensors) == {name + suffix for name in expected for suffix in (".in_sum2", ".counts")}
    for name in expected:
        columns = 128 if "ffn_down" in name else 64  # each weight's input width
        assert list(tensors[name + ".in_sum2"].shape) == [columns, 1]
        assert list(tensors[name + ".counts"].shape) == [1, 1]
        assert tensors[name + ".counts"].data.reshape(-1)[0] == matrix.tokens  # every token reaches every layer
        assert (tensors[name + ".in_sum2"].data > 0).all()
    again = read_imatrix(path)
    assert again.counts == matrix.counts and again.datasets == matrix.datasets
    for name, sums in matrix.sums.items():
        np.testing.assert_allclose(again.sums[name], sums, rtol=1e-6)


def test_the_output_head_entry_is_named_after_the_tensor_llama_cpp_quantizes_for_it(tiny_spm_hf, tmp_path):
    tied = tmp_path / "tied"
    shutil.copytree(tiny_spm_hf, tied)
    config = json.loads((tied / "config.json").read_text())
    (tied / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    heads = {
        "untied": collect(tiny_spm_hf, TRAIN, tokens=300, n_threads=1, progress=False),
        "tied": collect(tied, TRAIN, tokens=300, n_threads=1, progress=False),
        "blocks only": collect(tiny_spm_hf, TRAIN, tokens=300, n_threads=1, progress=False, output=False),
    }
    names = {key: {n for n in matrix.sums if not n.startswith("blk.")} for key, matrix in heads.items()}
    assert names == {"untied": {"output.weight"}, "tied": {"token_embd.weight"}, "blocks only": set()}
    untied = heads["untied"]
    assert untied.counts["output.weight"] == untied.tokens


def test_the_quantizer_weighs_by_the_imatrix_where_llama_cpp_uses_one(tiny_spm_ggufs, tiny_imatrix, tmp_path):
    source, importance = tiny_spm_ggufs["f32"], tiny_imatrix[0].means()
    digest = {}
    for quant in ("q4_k_m", "q8_0"):
        for weighed in (False, True):
            out = tmp_path / f"{quant}-{weighed}.gguf"
            quantize_gguf(source, out, quant, n_threads=1, importance=importance if weighed else None)
            digest[quant, weighed] = sha256_file(out)
    again = quantize_gguf(source, tmp_path / "again.gguf", "q4_k_m", n_threads=1)
    assert digest["q4_k_m", True] != digest["q4_k_m", False] == sha256_file(again)  # not run-to-run noise
    assert digest["q8_0", True] == digest["q8_0", False]  # Q8_0 rounds without importance weights


def test_gguf_export_records_the_imatrix_and_refuses_a_file_that_is_not_one(
    tiny_spm_hf, tiny_imatrix, tmp_path, capsys
):
    path = tiny_imatrix[1]
    argv = ["gguf", tiny_spm_hf, "--out", tmp_path / "out", "--quant", "q4_k_m", "--imatrix", path, "-q"]
    code, _, err = run(uner_export, argv, capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "manifest.json").read_text())["imatrix"]
    assert record == {
        "file": "imatrix.gguf",
        "sha256": sha256_file(path),
        "datasets": ["train.txt", "engtrain.bio"],
        "chunks": tiny_imatrix[0].chunks,
    }
    not_imatrix = tmp_path / "out" / "tiny-spm-llama.Q4_K_M.gguf"
    argv = ["gguf", tiny_spm_hf, "--out", tmp_path / "again", "--quant", "q4_k_m", "--imatrix", not_imatrix]
    code, _, err = run(uner_export, argv, capsys)
    assert_one_line_error(code, err, "expected a GGUF imatrix file (general.type = imatrix)")
    assert not (tmp_path / "again").exists()


def test_the_imatrix_command_writes_the_file_and_refuses_missing_data(tiny_spm_hf, tmp_path, capsys):
    out = tmp_path / "im.gguf"
    argv = ["imatrix", tiny_spm_hf, "-d", TRAIN[0], "--out", out, "--tokens", "300", "--threads", "1", "-q"]
    code, stdout, err = run(uner_export, argv, capsys)
    assert code == 0, err
    assert stdout.strip() == str(out) and read_imatrix(out).chunks > 0
    code, _, err = run(uner_export, [*argv[:3], tmp_path / "nope.txt", *argv[4:], "--force"], capsys)
    assert_one_line_error(code, err, "does not exist")

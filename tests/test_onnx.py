"""The ONNX arm: export at four precisions, run through ONNX Runtime, parity with torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import crossner_queries
from tests.parity import greedy_mismatches
from tests.test_cli import assert_one_line_error, run
from uner import load
from uner.cli import main as uner
from uner.errors import InputError, ModelNotFound, ProviderUnavailable
from uner.onnx_backend import OnnxExtractor, choose_provider
from uner.torch_backend import TorchExtractor

CPU_ONLY = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def torch_smollm2(smollm2_hf):
    with TorchExtractor(smollm2_hf) as extractor:
        yield extractor


def test_onnx_fp32_greedy_ids_match_torch(torch_smollm2, smollm2_onnx):
    with OnnxExtractor(smollm2_onnx["fp32"]) as candidate:
        assert candidate.provider == "cpu"
        assert greedy_mismatches(torch_smollm2, candidate, crossner_queries(per_domain=3)) == []


def test_onnx_fp32_of_sentencepiece_llama_matches_torch(tiny_spm_hf, tiny_spm_onnx_fp32):
    # The real LLaMA tokenizer and grouped-query attention, as UniNER-7B has (minus the size).
    # 64 new tokens: the random model never stops by itself
    with (
        TorchExtractor(tiny_spm_hf, max_new_tokens=64) as reference,
        OnnxExtractor(tiny_spm_onnx_fp32, max_new_tokens=64) as candidate,
    ):
        assert greedy_mismatches(reference, candidate, crossner_queries(per_domain=3)) == []


def test_parity_check_catches_int4_drift(torch_smollm2, smollm2_onnx):
    # The same check as above fails on a variant that really differs: int4 SmolLM2 drifts.
    with OnnxExtractor(smollm2_onnx["int4"]) as candidate:
        assert len(greedy_mismatches(torch_smollm2, candidate, crossner_queries(per_domain=1))) >= 1


def test_fp16_export_runs_on_cpu_close_to_torch(torch_smollm2, smollm2_onnx, caplog):
    with OnnxExtractor(smollm2_onnx["fp16"]) as candidate:
        assert candidate.provider == "cpu"
        mismatches = greedy_mismatches(torch_smollm2, candidate, crossner_queries(per_domain=3))
    assert len(mismatches) <= 3, "fp16 should agree with torch on most queries"
    assert "built for tensorrt/cuda; running it on cpu" in caplog.text


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int4"])
def test_every_precision_runs_through_the_cli_and_gives_parseable_output(smollm2_onnx, capsys, precision):
    code, out, err = run(
        uner,
        [
            "extract",
            "-m",
            smollm2_onnx[precision],
            "-l",
            "person,location",
            "-t",
            "Barack Obama visited Paris.",
            "--json",
            "--raw",
            "--max-new-tokens",
            "24",
        ],
        capsys,
    )
    assert code == 0, err
    record = json.loads(out)
    assert set(record["raw"]) == {"person", "location"}
    assert all(isinstance(answer, str) and answer for answer in record["raw"].values())
    assert isinstance(record["entities"], list)


def test_manifest_lists_every_file_with_its_sha256(smollm2_onnx):
    from uner.toolkit.files import sha256_file

    folder = smollm2_onnx["int4"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "onnx" and manifest["precision"] == "int4"
    assert manifest["quantization"]["block_size"] == 32 and manifest["opsets"]["ai.onnx"] >= 17
    assert "{text}" in manifest["prompt_template"] and (folder / "uner_prompt.json").is_file()
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk
    assert {"model.onnx", "model.onnx.data", "tokenizer.json", "generation_config.json"} <= set(on_disk)
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(folder / name)


def test_load_detects_onnx_folders_and_files(smollm2_onnx):
    from uner.loading import detect_backend

    assert detect_backend(smollm2_onnx["int8"]) == "onnx"
    assert detect_backend(smollm2_onnx["int8"] / "model.onnx") == "onnx"


def test_auto_provider_falls_back_to_cpu_and_forced_cuda_says_it_is_missing():
    assert choose_provider("auto", "fp32", CPU_ONLY) == "cpu"
    assert choose_provider("auto", "int4", ["TensorrtExecutionProvider", "CUDAExecutionProvider", *CPU_ONLY]) == "cuda"
    assert (
        choose_provider("auto", "fp16", ["TensorrtExecutionProvider", "CUDAExecutionProvider", *CPU_ONLY]) == "tensorrt"
    )
    with pytest.raises(ProviderUnavailable, match="cuda execution provider is not available.*available: cpu"):
        choose_provider("cuda", "fp32", CPU_ONLY)
    with pytest.raises(InputError, match="for a int4 export, got tensorrt"):
        choose_provider("tensorrt", "int4", ["TensorrtExecutionProvider", *CPU_ONLY])


def test_cli_reports_a_missing_provider_in_one_line(smollm2_onnx, capsys):
    code, _, err = run(
        uner, ["extract", "-m", smollm2_onnx["int4"], "-l", "person", "-t", "x", "--provider", "cuda"], capsys
    )
    assert_one_line_error(
        code, err, "the cuda execution provider is not available in this onnxruntime (available: cpu)"
    )


def test_cli_refuses_tensorrt_for_an_int4_export(smollm2_onnx, capsys):
    code, _, err = run(
        uner, ["extract", "-m", smollm2_onnx["int4"], "-l", "person", "-t", "x", "--provider", "tensorrt"], capsys
    )
    assert_one_line_error(code, err, "expected --provider among cuda, cpu for a int4 export, got tensorrt")


def test_provider_option_is_refused_for_other_backends(smollm2_ggufs):
    with pytest.raises(InputError, match="got provider, which it does not take"):
        load(smollm2_ggufs["q4_k_m"], provider="cpu")


def test_folder_without_our_manifest_loads_from_its_standard_layout(smollm2_onnx, tmp_path):
    foreign = tmp_path / "foreign"
    shutil.copytree(smollm2_onnx["int8"], foreign)
    (foreign / "manifest.json").unlink()
    (foreign / "uner_prompt.json").unlink()
    with load(foreign, max_new_tokens=8) as ner:
        assert ner.name == "onnx" and ner.layout.precision is None
        assert ner.answer("Barack Obama visited Paris.", "person")


def test_missing_onnx_files_are_named(smollm2_onnx, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(smollm2_onnx["int8"], broken)
    (broken / "model.onnx.data").unlink()
    with pytest.raises(ModelNotFound, match=r"expected a loadable ONNX model at .*model(_branches)?\.onnx"):
        OnnxExtractor(broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(ModelNotFound, match="expected model.onnx in the ONNX folder"):
        OnnxExtractor(broken)


def test_edge_install_runs_onnx_without_torch(smollm2_onnx):
    code = (
        "import sys\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None  # importing them now fails\n"
        "from uner import load\n"
        f"ner = load({str(smollm2_onnx['int4'])!r}, max_new_tokens=8)\n"
        "print(repr(ner.answer('Barack Obama visited Paris.', 'person')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_export_cli_writes_a_finished_folder_and_refuses_to_overwrite_it(tiny_spm_hf, tmp_path, capsys):
    from uner.toolkit.cli import main as uner_export

    out = tmp_path / "int4"
    code, stdout, err = run(
        uner_export, ["onnx", tiny_spm_hf, "--out", out, "-p", "int4", "--block-size", "64", "-q"], capsys
    )
    assert code == 0, err
    assert stdout.split() == [str(out)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"] == {
        "bits": 4,
        "block_size": 64,
        "accuracy_level": 4,
        "symmetric": False,  # int4's default: asymmetric blocks, the measured best
        "head_bits": 4,
        "int8_projections": [],
        "gptq": None,  # rounded to nearest: no calibration data given
    }
    assert (out / "tokenizer.model").read_bytes() == (tiny_spm_hf / "tokenizer.model").read_bytes()
    assert not list(tmp_path.glob(".*partial"))
    code, _, err = run(uner_export, ["onnx", tiny_spm_hf, "--out", out, "-p", "int4", "-q"], capsys)
    assert_one_line_error(code, err, "pass --force to overwrite")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "int4", "--device", "tensorrt"], "int4 weights use MatMulNBits, which TensorRT does not run"),
        (["-p", "fp16", "--device", "cpu"], "fp16 is a GPU precision; for CPU export fp32, int8 or int4"),
        (
            ["-p", "fp32", "--block-size", "32"],
            "expected --block-size/--accuracy-level/--asymmetric/--head-bits/--int8-projections only with int4/int8,"
            " got fp32",
        ),
        (["-p", "int8", "--int8-projections", "up_proj"], "expected --int8-projections only with int4, got int8"),
        (["-p", "int4", "--int8-projections", "up_proj,mlp"], "expected --int8-projections among qkv_proj"),
        (["-p", "int4", "--block-size", "48"], "expected --block-size among 16, 32, 64, 128, 256, got 48"),
    ],
)
def test_export_cli_refuses_unsupported_combinations_before_any_work(tiny_spm_hf, tmp_path, capsys, args, message):
    from uner.toolkit.cli import main as uner_export

    code, _, err = run(uner_export, ["onnx", tiny_spm_hf, "--out", tmp_path / "x", *args], capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("storage", ["bf16-safetensors", "fp16-pickle"])
def test_bf16_and_pickled_checkpoints_export_with_torch_parity(tiny_spm_hf, tmp_path, storage):
    # UniNER's own releases are pytorch_model-*.bin; fine-tunes are often bf16.
    import torch
    from transformers import LlamaForCausalLM

    from uner.toolkit.export_onnx import export_onnx

    source = tmp_path / storage
    dtype = torch.bfloat16 if storage.startswith("bf16") else torch.float16
    model = LlamaForCausalLM.from_pretrained(tiny_spm_hf, dtype=dtype)
    if storage.endswith("pickle"):
        source.mkdir()
        model.config.save_pretrained(source)
        torch.save(model.state_dict(), source / "pytorch_model.bin")
    else:
        model.save_pretrained(source)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(tiny_spm_hf / name, source / name)
    folder = export_onnx(source, tmp_path / "onnx", "fp32", allow_pickle=True, progress=False).folder
    with (
        TorchExtractor(source, allow_pickle=storage.endswith("pickle")) as reference,
        OnnxExtractor(folder) as candidate,
    ):
        assert greedy_mismatches(reference, candidate, crossner_queries(per_domain=2)) == []

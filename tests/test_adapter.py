"""``--adapter``: a PEFT LoRA merged into the base before conversion, with parity kept."""

import json

import pytest

from tests.conftest import crossner_queries
from tests.parity import greedy_mismatches
from tests.test_cli import assert_one_line_error, run
from uner import load
from uner.toolkit.adapter import merge_adapter
from uner.toolkit.cli import main as uner_export


@pytest.fixture(scope="module")
def random_lora(tiny_spm_hf, tmp_path_factory):
    """A LoRA with random A and B (PEFT's default B = 0 would change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_spm_hf)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def test_gguf_of_base_plus_adapter_matches_torch_on_the_merged_model(tiny_spm_hf, random_lora, tmp_path, capsys):
    code, out, err = run(
        uner_export,
        [
            "gguf",
            tiny_spm_hf,
            "--adapter",
            random_lora,
            "--name",
            "tuned",
            "--outtype",
            "f32",
            "--out",
            tmp_path / "gguf",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "gguf" / "manifest.json").read_text())
    assert manifest["adapter"] == str(random_lora) and not list((tmp_path / "gguf").glob(".merge-*"))
    merged = merge_adapter(tiny_spm_hf, random_lora, tmp_path / "merged")
    queries = crossner_queries(per_domain=2)
    # 32 new tokens: a random model never stops by itself, and 32 greedy steps already compare every layer
    gguf = tmp_path / "gguf" / "tuned.F32.gguf"
    with load(merged, max_new_tokens=32) as reference, load(gguf, kv_cache_type="f32", max_new_tokens=32) as candidate:
        assert greedy_mismatches(reference, candidate, queries) == []
        with load(tiny_spm_hf, max_new_tokens=32) as untuned:  # and the adapter really changed the model
            assert greedy_mismatches(untuned, candidate, queries)


def test_onnx_export_takes_the_adapter_too(tiny_spm_hf, random_lora, tmp_path):
    from uner.toolkit.export_onnx import export_onnx

    folder = export_onnx(tiny_spm_hf, tmp_path / "onnx", "fp32", adapter=random_lora, progress=False).folder
    merged = merge_adapter(tiny_spm_hf, random_lora, tmp_path / "merged")
    with load(merged, max_new_tokens=32) as reference, load(folder, max_new_tokens=32) as candidate:
        assert greedy_mismatches(reference, candidate, crossner_queries(per_domain=1)) == []


def test_a_folder_that_is_not_a_lora_adapter_is_refused(tiny_spm_hf, tmp_path, capsys):
    code, _, err = run(
        uner_export, ["gguf", tiny_spm_hf, "--adapter", tiny_spm_hf, "--out", tmp_path / "x", "-q"], capsys
    )
    assert_one_line_error(code, err, "expected a PEFT adapter folder with adapter_config.json")
    assert not (tmp_path / "x").exists()

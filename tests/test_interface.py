"""One Protocol over every backend, backend auto-detection, and all-or-nothing outputs."""

import pytest

from uner import BACKENDS, Entity, Extractor, InputError, ModelNotFound, detect_backend, load
from uner.toolkit.errors import QuantizeError
from uner.toolkit.quantize import quantize_gguf


@pytest.fixture(scope="module")
def artifacts(tiny_spm_hf, tiny_spm_ggufs, tiny_spm_onnx_fp32):
    return {"torch": tiny_spm_hf, "llamacpp": tiny_spm_ggufs["f32"], "onnx": tiny_spm_onnx_fp32}


def test_every_backend_is_covered(artifacts):
    assert set(BACKENDS) == set(artifacts)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend_implements_the_extractor_protocol(artifacts, backend):
    with load(artifacts[backend], backend=backend, max_new_tokens=8) as ner:
        assert isinstance(ner, Extractor) and ner.name == backend
        single = ner.extract("Barack Obama visited Paris.", ["person", "location"])
        batch = ner.extract_batch(["Barack Obama visited Paris.", "Berlin"], ["person", "location"])
        assert batch[0] == single and len(batch) == 2
        assert all(isinstance(e, Entity) for e in single)
        with pytest.raises(InputError):
            ner.extract("Barack Obama", [])


def test_load_picks_the_backend_from_the_artifact(artifacts, tmp_path):
    assert detect_backend(artifacts["torch"]) == "torch"
    assert detect_backend(artifacts["llamacpp"]) == "llamacpp"
    assert detect_backend(artifacts["onnx"]) == "onnx"  # although it carries config.json too
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFound):
        detect_backend(tmp_path / "notes.txt")
    with pytest.raises(InputError):
        load(artifacts["torch"], backend="llamacpp")


def test_failed_quantization_leaves_no_finished_looking_file(tiny_spm_ggufs, tmp_path, monkeypatch):
    import llama_cpp

    def interrupted(source, tmp, params):
        with open(tmp, "wb") as handle:
            handle.write(b"GGUF half-written")
        return 1

    monkeypatch.setattr(llama_cpp, "llama_model_quantize", interrupted)
    with pytest.raises(QuantizeError):
        quantize_gguf(tiny_spm_ggufs["f32"], tmp_path / "m.Q4_0.gguf", "q4_0")
    assert list(tmp_path.iterdir()) == []


def test_hub_repo_id_offline_without_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound, match="Hub repo"):
        load("Universal-NER/UniNER-7B-type")


def test_torch_auto_device_and_dtype_mean_fp32_on_a_cpu_only_machine(tiny_spm_hf):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto means cuda/float16 here")
    with load(tiny_spm_hf, device="auto", dtype="auto") as ner:
        assert ner.device == "cpu" and next(ner.model.parameters()).dtype == torch.float32

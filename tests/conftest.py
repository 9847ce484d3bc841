"""Shared fixtures: real models built once per session from what is available offline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("UNER_DATA", ROOT.parent / "shared" / "data"))
LLAMA_TOKENIZER = DATA / "llama-tokenizer" / "tokenizer.model"
CROSSNER_EVAL = {
    "ai": DATA / "crossner_ai" / "CrossNER_AI.json",
    "literature": DATA / "crossner_literature" / "CrossNER_literature.json",
    "music": DATA / "crossner_music" / "CrossNER_music.json",
}


@pytest.fixture(scope="session", autouse=True)
def _private_uner_cache(tmp_path_factory):
    """Loading an export stamps its checked files into the uner cache: keep tests out of the
    user's own (``~/.cache/uner``)."""
    if "UNER_CACHE" not in os.environ:
        os.environ["UNER_CACHE"] = str(tmp_path_factory.mktemp("uner-cache"))
    yield


def _require_data() -> None:
    if not DATA.is_dir():
        pytest.fail(f"shared data not found at {DATA}; set UNER_DATA")


def crossner_queries(per_domain: int) -> list[tuple[str, str]]:
    """(text, label) pairs from the official UniNER eval files: the first queries of each domain."""
    from uner.eval_data import read_queries

    _require_data()
    return [(q.text, q.label) for path in CROSSNER_EVAL.values() for q in read_queries(path)[:per_domain]]


def all_crossner_mit_texts() -> list[str]:
    """Every distinct text of the CrossNER eval files and of the CrossNER and MIT-movie BIO splits."""
    from uner.eval_data import read_bio, read_queries

    _require_data()
    texts = [q.text for path in CROSSNER_EVAL.values() for q in read_queries(path)]
    bio_files = [
        DATA / d / f"{split}.txt"
        for d in ("crossner_ai", "crossner_literature", "crossner_music")
        for split in ("train", "dev", "test")
    ]
    bio_files += [DATA / "mit_movie" / f"{split}.bio" for split in ("engtrain", "engtest")]
    for path in bio_files:
        texts += [passage.text for passage in read_bio(path)[0]]
    return list(dict.fromkeys(texts))


@pytest.fixture(scope="session")
def smollm2_hf(tmp_path_factory) -> Path:
    from uner.toolkit.embedded import materialize_smollm2

    return materialize_smollm2(tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct")


def f32_gguf_ladder(source: Path, out: Path, quants: list[str]) -> dict[str, Path]:
    """``source`` as F32 GGUF and each of ``quants``: {"f32": ..., quant: ..., "manifest": ...}."""
    from uner.toolkit import export_gguf_ladder

    result = export_gguf_ladder(source, out, "f32", ",".join(quants), progress=False)
    return {"f32": result.base, **dict(zip(quants, result.quantized)), "manifest": result.manifest}


@pytest.fixture(scope="session")
def smollm2_ggufs(smollm2_hf, tmp_path_factory) -> dict[str, Path]:
    return f32_gguf_ladder(smollm2_hf, tmp_path_factory.mktemp("smollm2-gguf"), ["q8_0", "q4_k_m"])


def make_tiny_spm_llama(dest: Path, seed: int = 0) -> Path:
    """A random-weight LLaMA (2 layers, GQA) with the real LLaMA SentencePiece tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    _require_data()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        rms_norm_eps=1e-6,
        initializer_range=0.5,  # wide logits: greedy choices are not near-ties between float paths
    )
    model = LlamaForCausalLM(config).to(torch.float16)
    model.save_pretrained(dest)
    shutil.copy(LLAMA_TOKENIZER, dest / "tokenizer.model")
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
            }
        )
    )
    return dest


@pytest.fixture(scope="session")
def tiny_spm_hf(tmp_path_factory) -> Path:
    return make_tiny_spm_llama(tmp_path_factory.mktemp("tiny-spm") / "tiny-spm-llama")


@pytest.fixture(scope="session")
def tiny_spm_ggufs(tiny_spm_hf, tmp_path_factory) -> dict[str, Path]:
    from uner.toolkit import export_gguf

    out = tmp_path_factory.mktemp("tiny-spm-gguf")
    return {
        "f32": export_gguf(tiny_spm_hf, out, "f32", progress=False),
        "f32_no_unpermute": export_gguf(tiny_spm_hf, out / "broken", "f32", unpermute=False, progress=False),
    }


@pytest.fixture(scope="session")
def smollm2_onnx(smollm2_hf, tmp_path_factory) -> dict[str, Path]:
    """SmolLM2 exported at every precision (fp16 for GPUs; it still runs on CPU, slowly)."""
    from uner.toolkit.export_onnx import export_onnx

    out = tmp_path_factory.mktemp("smollm2-onnx")
    return {p: export_onnx(smollm2_hf, out / p, p, progress=False).folder for p in ("fp32", "fp16", "int8", "int4")}


@pytest.fixture(scope="session")
def tiny_spm_onnx_fp32(tiny_spm_hf, tmp_path_factory) -> Path:
    from uner.toolkit.export_onnx import export_onnx

    return export_onnx(tiny_spm_hf, tmp_path_factory.mktemp("tiny-spm-onnx") / "fp32", "fp32", progress=False).folder


@pytest.fixture(scope="session")
def uniner_smol_hf(tmp_path_factory) -> Path:
    """uniner-smol-135m (SmolLM2 + the committed LoRA): answers in UniNER's JSON format."""
    from uner.bench.reference_models import build_uniner_smol

    return build_uniner_smol(tmp_path_factory.mktemp("uniner-smol") / "uniner-smol-135m")


@pytest.fixture(scope="session")
def uniner_smol_ggufs(uniner_smol_hf, tmp_path_factory) -> dict[str, Path]:
    return f32_gguf_ladder(uniner_smol_hf, tmp_path_factory.mktemp("uniner-smol-gguf"), ["q4_k_m"])


@pytest.fixture(scope="session")
def uniner_smol_onnx(uniner_smol_hf, tmp_path_factory) -> dict[str, Path]:
    from uner.toolkit.export_onnx import export_onnx

    out = tmp_path_factory.mktemp("uniner-smol-onnx")
    return {p: export_onnx(uniner_smol_hf, out / p, p, progress=False).folder for p in ("fp32", "int4")}


def crossner_texts(per_domain: int) -> list[tuple[str, list[str]]]:
    """(text, every entity type of its domain) for the first texts of each official eval file."""
    from uner.eval_data import read_queries

    _require_data()
    texts = []
    for path in CROSSNER_EVAL.values():
        by_text: dict[str, list[str]] = {}
        for query in read_queries(path):
            if len(by_text) == per_domain and query.text not in by_text:
                break
            by_text.setdefault(query.text, []).append(query.label)
        texts += [(text, list(dict.fromkeys(labels))) for text, labels in by_text.items()]
    return texts


# -- a recipe output of the tiny model (tests/test_recipes.py, tests/test_publish.py) ----------

TINY_RECIPE = """
name = "tiny"
source = "{source}"
license = "cc-by-nc-4.0"
base_model = "me/tiny-base"
description = "A random two-layer LLaMA."
[gguf]
types = ["f16", "q8_0"]
[onnx]
precisions = ["fp32"]
[bench]
data = ["crossner_ai/CrossNER_AI.json"]
limit = 4
max_new_tokens = 6
[gates]
f16 = 0.1
q8_0 = 0.5
onnx-fp32 = 0.1
"""


def write_recipe(folder: Path, source: Path, text: str = TINY_RECIPE) -> Path:
    path = folder / "tiny.toml"
    path.write_text(text.format(source=source))
    return path


@pytest.fixture
def own_uner_cache(tmp_path, monkeypatch):
    """Verification stamps go to a fresh cache, not the user's."""
    monkeypatch.setenv("UNER_CACHE", str(tmp_path / "uner-cache"))


@pytest.fixture(scope="session")
def tiny_export(tiny_spm_hf, tmp_path_factory) -> Path:
    """The tiny model through a whole recipe: GGUF F16 + Q8_0, ONNX fp32, benched."""
    folder = tmp_path_factory.mktemp("recipe")
    from uner.bench.recipe_run import run_recipe
    from uner.toolkit.recipes import load_recipe

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNER_CACHE", str(folder / "uner-cache"))
        run_recipe(
            load_recipe(write_recipe(folder, tiny_spm_hf)), folder / "out", data_dir=DATA, threads=1, progress=False
        )
    return folder / "out"


@pytest.fixture
def export_copy(tiny_export, tmp_path) -> Path:
    """A copy to tamper with."""
    return Path(shutil.copytree(tiny_export, tmp_path / "out"))

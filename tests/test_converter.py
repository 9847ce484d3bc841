"""The HF -> GGUF converter, read back with gguf-py's independent reader."""

import json

import gguf
import numpy as np
import pytest
from safetensors import safe_open

from uner.prompt import TEMPLATE
from uner.toolkit import export_gguf
from uner.toolkit.checkpoint import params_from_config
from uner.toolkit.tensor_map import unpermute_rotary

BASE_CONFIG = {
    "num_attention_heads": 4,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "vocab_size": 10,
}


def _hf_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF's own conversion from Meta's interleaved rows to rotate-half rows (the forward direction)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def test_unpermute_inverts_hf_rotary_permutation():
    meta = np.arange(8 * 64 * 3, dtype=np.float32).reshape(8 * 64, 3)
    for n_head in (8, 2):
        assert np.array_equal(unpermute_rotary(_hf_permute(meta, n_head), n_head), meta)
        assert not np.array_equal(_hf_permute(meta, n_head), meta)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}, 100000.0),  # transformers 5
        ({"rope_theta": 500000.0}, 500000.0),  # transformers 4
        ({}, 10000.0),  # LLaMA-1-era config, as UniNER's
    ],
)
def test_rope_theta_is_read_from_every_config_generation(extra, expected):
    assert params_from_config({**BASE_CONFIG, **extra}).rope_theta == expected


def _fields(path):
    reader = gguf.GGUFReader(path)
    return reader, {
        name: field.contents()
        for name, field in reader.fields.items()
        if not name.startswith("tokenizer.ggml.t")
        and name != "tokenizer.ggml.merges"
        and name != "tokenizer.ggml.scores"
    }


def test_bpe_export_carries_hparams_vocab_and_provenance(smollm2_hf, smollm2_ggufs):
    reader, meta = _fields(smollm2_ggufs["f32"])
    config = json.loads((smollm2_hf / "config.json").read_text())
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == config["num_hidden_layers"]
    assert meta["llama.embedding_length"] == config["hidden_size"]
    assert meta["llama.attention.head_count_kv"] == config["num_key_value_heads"]
    assert meta["llama.rope.freq_base"] == pytest.approx(100000.0)
    assert meta["llama.context_length"] == 8192
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "smollm"
    assert meta["tokenizer.ggml.eos_token_id"] == 2 and meta["tokenizer.ggml.add_bos_token"] is False
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == config["vocab_size"]
    assert meta["uner.prompt_template"] == TEMPLATE
    digests = json.loads(meta["uner.source.sha256"])
    assert set(digests) >= {"config.json", "tokenizer.json", "model.safetensors"}
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied embeddings


def test_spm_export_types_and_values_match_source(tiny_spm_hf, tmp_path):
    for outtype, qtype in [("f32", "F32"), ("f16", "F16"), ("bf16", "BF16")]:
        path = export_gguf(tiny_spm_hf, tmp_path, outtype, progress=False)
        reader, meta = _fields(path)
        tensors = {t.name: t for t in reader.tensors}
        assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.add_bos_token"] is True
        assert meta["tokenizer.ggml.bos_token_id"] == 1 and meta["tokenizer.ggml.eos_token_id"] == 2
        assert tensors["blk.0.attn_q.weight"].tensor_type.name == qtype
        assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    with safe_open(tiny_spm_hf / "model.safetensors", "np") as source:
        hf_down = source.get_tensor("model.layers.1.mlp.down_proj.weight")
        hf_k = source.get_tensor("model.layers.0.self_attn.k_proj.weight")
    f32 = {t.name: t for t in gguf.GGUFReader(tmp_path / "tiny-spm-llama.F32.gguf").tensors}
    assert np.array_equal(np.asarray(f32["blk.1.ffn_down.weight"].data), hf_down.astype(np.float32))
    assert np.array_equal(np.asarray(f32["blk.0.attn_k.weight"].data), unpermute_rotary(hf_k.astype(np.float32), 2))


def test_bf16_source_weights_are_read_without_torch(tmp_path):
    from uner.toolkit.safetensors_lazy import bf16_to_float32

    values = np.array([1.5, -2.25, 3.0e-3], dtype=np.float32)
    as_bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)
    assert np.allclose(bf16_to_float32(as_bf16), values, rtol=1e-2)

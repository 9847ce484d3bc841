"""The exported ONNX graph runs its output layer on the last position only, and that is the
position whose logits a token-by-token decode of the same prompt ends with."""

import json

import numpy as np

from uner import load
from uner.toolkit.onnx_graph_edits import GATHER_NODE, logits_at_last_position


def test_the_exported_graph_gives_the_last_positions_logits_only(tiny_spm_onnx_fp32):
    import onnx

    graph = onnx.load(str(tiny_spm_onnx_fp32 / "model.onnx"), load_external_data=False).graph
    assert [n.name for n in graph.node].count(GATHER_NODE) == 1
    before = (tiny_spm_onnx_fp32 / "model.onnx").read_bytes()
    assert logits_at_last_position(tiny_spm_onnx_fp32 / "model.onnx")  # already edited: left alone
    assert (tiny_spm_onnx_fp32 / "model.onnx").read_bytes() == before
    assert json.loads((tiny_spm_onnx_fp32 / "manifest.json").read_text())["logits"] == "last position"
    with load(tiny_spm_onnx_fp32) as model:
        prompt = model.encode("Barack Obama visited Paris in 2009 .")
        count = len(prompt)
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tiny_spm_onnx_fp32 / "model.onnx"))  # onnxruntime-genai's graph
        session_logits = session.run(
            ["logits"],
            {
                "input_ids": np.array([prompt]),
                "attention_mask": np.ones((1, count), dtype=np.int64),
                **{name: value.numpy() for name, value in zip(model.io.past, model.empty_past())},
            },
        )[0]
        assert session_logits.shape[:2] == (1, 1)
        whole, _ = model.forward(np.array([prompt]), np.ones((1, count)), np.arange(count)[None], model.empty_past())
        past, logits = model.empty_past(), None
        for position, token in enumerate(prompt):  # one token at a time: each call's only position
            logits, past = model.forward(np.array([[token]]), np.ones((1, position + 1)), np.array([[position]]), past)
    np.testing.assert_allclose(whole, logits, atol=1e-4)
    np.testing.assert_allclose(session_logits[:, 0], whole, atol=1e-5)


def _kv_zeros(model, prefix_kv, rows: int, width: int) -> list[np.ndarray]:
    return [np.zeros((rows, a.shape[1], width, a.shape[3]), dtype=a.dtype) for a in (v.numpy() for v in prefix_kv)]


def test_one_call_over_every_suffix_matches_one_call_per_suffix(tiny_spm_onnx_fp32):
    with load(tiny_spm_onnx_fp32) as model:
        assert model.io.suffix_batching and model.layout.model_file.name == "model_branches.onnx"
        prefix = model.encode("Text: Barack Obama visited Paris in 2009 with Michelle .")
        suffixes = [model.encode(label + " in the text?") for label in ("person", "location", "year", "organisation")]
        start = len(prefix)
        _, prefix_kv = model.forward(
            np.array([prefix]), np.ones((1, start)), np.arange(start)[None], model.empty_past()
        )
        width = start + max(map(len, suffixes))
        together = _kv_zeros(model, prefix_kv, len(suffixes), width)
        logits = model.branch_pool()._suffixes_together(prefix_kv, start, suffixes, together)
        alone = _kv_zeros(model, prefix_kv, len(suffixes), width)
        expected = []
        for row, suffix in enumerate(suffixes):
            total = start + len(suffix)
            row_logits, present = model.forward(
                np.array([suffix]), np.ones((1, total)), np.arange(start, total)[None], prefix_kv
            )
            expected.append(row_logits[0])
            for layer, value in zip(alone, present):
                layer[row, :, :total] = value.numpy()[0]
        # the check can fail: without the block-diagonal bias the suffixes see each other
        joined = np.array([[t for s in suffixes for t in s]])
        count = joined.shape[1]
        ends = list(np.cumsum([len(s) for s in suffixes]) - 1)
        unmasked, _ = model.forward(
            joined, np.ones((1, start + count)), np.arange(start, start + count)[None], prefix_kv, None, ends
        )
    np.testing.assert_allclose(np.stack(logits), np.stack(expected), atol=1e-4)
    for mine, theirs in zip(together, alone):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    assert np.abs(unmasked[1:] - np.stack(expected)[1:]).max() > 1e-2

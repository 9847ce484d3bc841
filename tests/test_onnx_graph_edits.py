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
        session_logits = model.session.run(
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

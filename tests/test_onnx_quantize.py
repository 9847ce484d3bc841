"""The streaming int4/int8 pass: same bytes as onnxruntime's quantizer, correct tied embeddings, an
8-bit head among 4-bit layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from uner.toolkit.onnx_quantize import block_quantize, quantize_onnx


def save_with_external_data(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0)
    return path


def matmul_model(weight: np.ndarray) -> onnx.ModelProto:
    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="/proj/MatMul")],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", n])],
        [numpy_helper.from_array(weight, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def tied_model(weight: np.ndarray) -> onnx.ModelProto:
    """ids -> Transpose(W) -> Gather -> MatMul(W): the builder's tied-embedding float graph."""
    k, n = weight.shape
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["W"], ["WT"], name="/embed/Transpose"),
            helper.make_node("Gather", ["WT", "ids"], ["h"], name="/embed/Gather"),
            helper.make_node("MatMul", ["h", "W"], ["y"], name="/lm_head/MatMul"),
        ],
        "tied",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "s"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", n])],
        [numpy_helper.from_array(weight, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def dequantize(packed: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
    """Independent reading of the MatMulNBits int4 layout: low nibble first, zero point 8."""
    low, high = packed & 0x0F, packed >> 4
    values = np.stack([low, high], axis=-1).reshape(packed.shape[0], packed.shape[1], -1).astype(np.float32) - 8
    return (values * scales[:, :, None]).reshape(packed.shape[0], -1)[:, :k].T  # [K, N]


def run(path: Path, feeds: dict) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize(("bits", "symmetric"), [(4, True), (8, True), (4, False), (8, False)])
def test_streaming_pass_writes_the_bytes_onnxruntimes_quantizer_writes(tmp_path, bits, symmetric):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    weight = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
    source = save_with_external_data(matmul_model(weight), tmp_path / "fp32.onnx")
    quantize_onnx(source, tmp_path / "ours.onnx", bits, 32, accuracy_level=4, symmetric=symmetric)
    theirs = MatMulNBitsQuantizer(
        matmul_model(weight), bits=bits, block_size=32, is_symmetric=symmetric, accuracy_level=4
    )
    theirs.process()
    expected = {t.name: numpy_helper.to_array(t) for t in theirs.model.model.graph.initializer}
    ours = {
        t.name: numpy_helper.to_array(t, base_dir=str(tmp_path))
        for t in onnx.load(str(tmp_path / "ours.onnx")).graph.initializer
    }
    assert set(ours) == set(expected) == {f"W_Q{bits}", "W_scales"} | (set() if symmetric else {"W_zero_points"})
    for name in expected:
        np.testing.assert_array_equal(ours[name], expected[name])
    x = np.random.default_rng(1).standard_normal((1, 5, 64)).astype(np.float32)
    onnx.save(theirs.model.model, str(tmp_path / "theirs.onnx"))
    np.testing.assert_array_equal(run(tmp_path / "ours.onnx", {"x": x}), run(tmp_path / "theirs.onnx", {"x": x}))


def test_tied_embedding_reads_the_int4_lm_head_with_padding_sliced_off(tmp_path):
    k, n = 40, 24  # K = 40 is not a multiple of the 32 block: rows are padded, then sliced
    weight = np.random.default_rng(2).standard_normal((k, n)).astype(np.float32)
    source = save_with_external_data(tied_model(weight), tmp_path / "fp32.onnx")
    quantize_onnx(source, tmp_path / "int4.onnx", 4, 32, accuracy_level=None)
    ops = [node.op_type for node in onnx.load(str(tmp_path / "int4.onnx"), load_external_data=False).graph.node]
    assert ops == ["Reshape", "GatherBlockQuantized", "Slice", "MatMulNBits"]
    packed, scales, _ = block_quantize(weight, 4, 32)
    reference = save_with_external_data(tied_model(dequantize(packed, scales, k)), tmp_path / "reference.onnx")
    ids = np.array([[0, 5, 23, 7]], dtype=np.int64)
    np.testing.assert_allclose(
        run(tmp_path / "int4.onnx", {"ids": ids}), run(reference, {"ids": ids}), rtol=1e-5, atol=1e-5
    )


def test_asymmetric_int4_gives_the_tied_embedding_its_zero_points_too(tmp_path):
    k, n = 64, 24
    weight = np.random.default_rng(4).standard_normal((k, n)).astype(np.float32) + 0.5  # off-centre ranges
    source = save_with_external_data(tied_model(weight), tmp_path / "fp32.onnx")
    quantize_onnx(source, tmp_path / "int4.onnx", 4, 32, symmetric=False)
    graph = onnx.load(str(tmp_path / "int4.onnx"), load_external_data=False).graph
    assert all(node.input[-1] == "W_zero_points" for node in graph.node if node.op_type != "Reshape")
    packed, scales, zero_points = block_quantize(weight, 4, 32, symmetric=False)
    low, high = packed & 0x0F, packed >> 4
    values = np.stack([low, high], axis=-1).reshape(n, k // 32, 32).astype(np.float32)
    zeros = np.stack([zero_points & 0x0F, zero_points >> 4], axis=-1).reshape(n, -1)[:, : k // 32, None]
    dequantized = ((values - zeros) * scales[:, :, None]).reshape(n, k).T  # independent reading of the layout
    reference = save_with_external_data(tied_model(dequantized), tmp_path / "reference.onnx")
    ids = np.array([[0, 5, 23, 7]], dtype=np.int64)
    np.testing.assert_allclose(
        run(tmp_path / "int4.onnx", {"ids": ids}), run(reference, {"ids": ids}), rtol=1e-4, atol=1e-4
    )
    symmetric = dequantize(*block_quantize(weight, 4, 32)[:2], k)
    assert np.abs(dequantized - weight).mean() < np.abs(symmetric - weight).mean()  # the offset is worth its bytes


def dequantize_int8(packed: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
    """Independent reading of the MatMulNBits int8 layout: one byte per weight, zero point 128."""
    values = packed.astype(np.float32) - 128
    return (values * scales[:, :, None]).reshape(packed.shape[0], -1)[:, :k].T


def test_int8_tied_embedding_reads_the_int8_lm_head_instead_of_a_float_copy(tmp_path):
    k, n = 32, 16
    weight = np.random.default_rng(3).standard_normal((k, n)).astype(np.float32)
    source = save_with_external_data(tied_model(weight), tmp_path / "fp32.onnx")
    quantize_onnx(source, tmp_path / "int8.onnx", 8, 32)
    graph = onnx.load(str(tmp_path / "int8.onnx"), load_external_data=False).graph
    assert [node.op_type for node in graph.node] == ["Reshape", "GatherBlockQuantized", "MatMulNBits"]
    assert {t.name for t in graph.initializer} == {"W_Q8", "W_scales", "W_gather_shape"}  # no float W
    packed, scales, _ = block_quantize(weight, 8, 32)
    reference = save_with_external_data(tied_model(dequantize_int8(packed, scales, k)), tmp_path / "reference.onnx")
    ids = np.array([[1, 2, 15]], dtype=np.int64)
    np.testing.assert_allclose(
        run(tmp_path / "int8.onnx", {"ids": ids}), run(reference, {"ids": ids}), rtol=1e-4, atol=1e-4
    )


def head_model(inner: np.ndarray, head: np.ndarray) -> onnx.ModelProto:
    """x -> MatMul(inner) -> MatMul(head) -> logits: one inner projection, one output projection."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "A"], ["h"], name="/proj/MatMul"),
            helper.make_node("MatMul", ["h", "H"], ["logits"], name="/lm_head/MatMul"),
        ],
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", inner.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "s", head.shape[1]])],
        [numpy_helper.from_array(inner, "A"), numpy_helper.from_array(head, "H")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_head_bits_gives_only_the_output_projection_eight_bits(tmp_path):
    rng = np.random.default_rng(5)
    inner, head = (rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2))
    source = save_with_external_data(head_model(inner, head), tmp_path / "fp32.onnx")
    quantize_onnx(source, tmp_path / "mixed.onnx", 4, 32, head_bits=8)
    quantize_onnx(source, tmp_path / "int4.onnx", 4, 32)
    graph = onnx.load(str(tmp_path / "mixed.onnx"), load_external_data=False).graph
    bits = {node.name: next(a.i for a in node.attribute if a.name == "bits") for node in graph.node}
    assert bits == {"/proj/MatMul_Q4": 4, "/lm_head/MatMul_Q8": 8}
    x = rng.standard_normal((1, 3, 64)).astype(np.float32)
    exact = x @ inner @ head
    mixed_error = np.abs(run(tmp_path / "mixed.onnx", {"x": x}) - exact).mean()
    int4_error = np.abs(run(tmp_path / "int4.onnx", {"x": x}) - exact).mean()
    assert mixed_error < int4_error


def test_head_bits_other_than_four_or_eight_is_refused(tmp_path):
    from uner.toolkit.errors import CheckpointError

    source = save_with_external_data(matmul_model(np.ones((32, 8), np.float32)), tmp_path / "fp32.onnx")
    with pytest.raises(CheckpointError, match="4 or 8 bits, got 6"):
        quantize_onnx(source, tmp_path / "out.onnx", 4, 32, head_bits=6)


def projections_model(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """x -> one MatMul per builder-named weight, in a chain (each square) -> a norm-like op, so
    that no MatMul writes the graph output (none is the head)."""
    nodes, previous = [], "x"
    for index, name in enumerate(weights):
        nodes.append(helper.make_node("MatMul", [previous, name], [f"h{index}"], name=f"/{name}/MatMul"))
        previous = f"h{index}"
    nodes.append(helper.make_node("Identity", [previous], ["y"], name="/final/Identity"))
    k = next(iter(weights.values())).shape[0]
    graph = helper.make_graph(
        nodes,
        "projections",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", k])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_int8_projections_widen_that_projection_in_every_layer_and_nothing_else(tmp_path):
    rng = np.random.default_rng(6)
    names = [
        f"model.layers.{layer}.{group}.MatMul.weight" for layer in (0, 1) for group in ("attn.qkv_proj", "mlp.up_proj")
    ]
    source = save_with_external_data(
        projections_model({n: rng.standard_normal((32, 32)).astype(np.float32) for n in names}), tmp_path / "fp32.onnx"
    )
    quantize_onnx(source, tmp_path / "mixed.onnx", 4, 32, symmetric=False, int8_projections=["up_proj"])
    graph = onnx.load(str(tmp_path / "mixed.onnx"), load_external_data=False).graph
    bits = {n.input[1]: next(a.i for a in n.attribute if a.name == "bits") for n in graph.node if n.attribute}
    assert bits == {
        "model.layers.0.attn.qkv_proj.MatMul.weight_Q4": 4,
        "model.layers.0.mlp.up_proj.MatMul.weight_Q8": 8,
        "model.layers.1.attn.qkv_proj.MatMul.weight_Q4": 4,
        "model.layers.1.mlp.up_proj.MatMul.weight_Q8": 8,
    }
    x = rng.standard_normal((1, 2, 32)).astype(np.float32)
    assert np.isfinite(run(tmp_path / "mixed.onnx", {"x": x})).all()


def test_unknown_int8_projections_and_int8_projections_in_an_int8_model_are_refused(tmp_path):
    from uner.toolkit.errors import CheckpointError

    source = save_with_external_data(matmul_model(np.ones((32, 8), np.float32)), tmp_path / "fp32.onnx")
    with pytest.raises(CheckpointError, match="got mlp_proj"):
        quantize_onnx(source, tmp_path / "out.onnx", 4, 32, int8_projections=["mlp_proj"])
    with pytest.raises(CheckpointError, match="only in an int4 model, got 8 bits"):
        quantize_onnx(source, tmp_path / "out.onnx", 8, 32, int8_projections=["up_proj"])

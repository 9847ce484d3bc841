"""Weight-only int4/int8 quantization of an ONNX decoder, one tensor at a time.

onnxruntime's ``MatMulNBitsQuantizer`` (and so the model builder's int4/int8 path) holds the
whole float model in memory as one protobuf: 27 GB for a 7B model in fp32, which the OOM killer
stopped at 23.7 GB on a 24 GiB machine. This pass reads the fp32 graph without its weights,
then streams each initializer from the external-data file to a new one, quantizing MatMul
weights on the way with onnxruntime's own MLAS kernels (``quantize_matmul_4bits`` /
``_8bits``, the ones its quantizer calls), so the numbers are the same and the memory is one
tensor. A tied embedding (``Transpose(lm_head) -> Gather``) reads the quantized lm_head through
``GatherBlockQuantized`` (4 or 8 bits) as the builder does, so it is stored once. ``head_bits``
gives the output projection (and the embedding tied to it) its own width, as the builder's
mixed-precision configs do: it is the tensor whose error every logit sees. With Hessians
(``toolkit/gptq.py``), 4-bit weights are rounded by GPTQ into the same layout, still one tensor
at a time.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from uner.toolkit.constants import PROJECTIONS, check_projections
from uner.toolkit.errors import CheckpointError
from uner.toolkit.gptq import gptq_quantize

logger = logging.getLogger(__name__)

_ALIGN = 4096  # page-aligned tensors can be memory-mapped by onnxruntime
#: the model builder's MatMul weights are ``model.layers.N.<group>.<projection>.MatMul.weight``
_PROJECTION_WEIGHT = re.compile(r"model\.layers\.\d+\.\w+\.(\w+)\.MatMul\.weight")


def projection_of(weight: str) -> str | None:
    """The decoder projection a builder MatMul weight belongs to (``qkv_proj``...), or None."""
    match = _PROJECTION_WEIGHT.fullmatch(weight)
    return match.group(1) if match and match.group(1) in PROJECTIONS else None


class _DataWriter:
    """Appends tensors to an external-data file and returns their TensorProto stubs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("wb")
        self._offset = 0

    def add(self, name: str, array: np.ndarray) -> TensorProto:
        padding = -self._offset % _ALIGN
        self._handle.write(b"\0" * padding)
        self._offset += padding
        data = np.ascontiguousarray(array)
        self._handle.write(data.tobytes())
        tensor = TensorProto(name=name, dims=list(data.shape), data_type=helper.np_dtype_to_tensor_dtype(data.dtype))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.path.name), ("offset", str(self._offset)), ("length", str(data.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self._offset += data.nbytes
        return tensor

    def close(self) -> None:
        self._handle.close()


def _read_external(tensor: TensorProto, folder: Path) -> np.ndarray:
    info = {entry.key: entry.value for entry in tensor.external_data}
    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    return np.memmap(
        folder / info["location"], dtype=dtype, mode="r", offset=int(info.get("offset", 0)), shape=tuple(tensor.dims)
    )


def _tensor_array(tensor: TensorProto, folder: Path) -> np.ndarray:
    if tensor.data_location == TensorProto.EXTERNAL:
        return _read_external(tensor, folder)
    return numpy_helper.to_array(tensor)


def block_quantize(
    weight: np.ndarray, bits: int, block_size: int, symmetric: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Block quantization of a ``[K, N]`` MatMul weight into MatMulNBits' layout: ``packed
    [N, K/block, block*bits/8]`` (uint8), ``scales [N, K/block]`` and, asymmetric, ``zero_points
    [N, ceil(K/block*bits/8)]`` (uint8, packed like the weights; None when symmetric: the
    kernels then assume the middle of the range)."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits

    rows, cols = weight.shape
    k_blocks = -(-rows // block_size)
    padded = np.zeros((k_blocks * block_size, cols), dtype=np.float32)
    padded[:rows] = weight
    packed = np.zeros((cols, k_blocks, block_size * bits // 8), dtype=np.uint8)
    scales = np.zeros((cols, k_blocks), dtype=np.float32)
    zero_points = np.zeros((cols, -(-k_blocks * bits // 8)), dtype=np.uint8)
    kernel = quantize_matmul_4bits if bits == 4 else quantize_matmul_8bits
    kernel(packed, padded, scales, zero_points, block_size, cols, rows, symmetric)
    return packed, scales, None if symmetric else zero_points


def _quantizable_weights(graph: onnx.GraphProto, initializers: dict[str, TensorProto]) -> set[str]:
    weights = set()
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in initializers:
            tensor = initializers[node.input[1]]
            if len(tensor.dims) == 2 and tensor.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
                weights.add(node.input[1])
    return weights


class _Rewriter:
    """Builds the quantized node list while initializers are streamed."""

    def __init__(self, graph: onnx.GraphProto, block_size: int, accuracy_level: int | None, symmetric: bool) -> None:
        self.graph, self.block_size, self.accuracy_level = graph, block_size, accuracy_level
        self.symmetric = symmetric
        self.outputs = {output.name for output in graph.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.extra_initializers: list[TensorProto] = []

    def tied_gathers(self, weight: str) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
        """``(Transpose, Gather)`` pairs that embed tokens with this (tied) lm_head weight."""
        pairs = []
        for node in self.consumers[weight]:
            if node.op_type == "Transpose":
                pairs += [(node, g) for g in self.consumers[node.output[0]] if g.op_type == "Gather"]
        return pairs

    def is_head(self, weight: str) -> bool:
        """Whether this weight's MatMul writes a graph output (the logits)."""
        return any(node.op_type == "MatMul" and node.output[0] in self.outputs for node in self.consumers[weight])

    def matmul_nodes(self, weight: str, k: int, n: int, bits: int) -> dict[str, onnx.NodeProto]:
        attributes = {"K": k, "N": n, "bits": bits, "block_size": self.block_size}
        if self.accuracy_level:
            attributes["accuracy_level"] = self.accuracy_level
        return {
            node.name: helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{weight}_Q{bits}", f"{weight}_scales", *self._zero_points(weight)],
                list(node.output),
                name=f"{node.name}_Q{bits}",
                domain="com.microsoft",
                **attributes,
            )
            for node in self.consumers[weight]
            if node.op_type == "MatMul"
        }

    def _zero_points(self, weight: str) -> list[str]:
        return [] if self.symmetric else [f"{weight}_zero_points"]

    def gather_nodes(self, gather: onnx.NodeProto, weight: str, k: int, n: int, bits: int) -> list:
        """Reshape + GatherBlockQuantized (+ Slice when K is padded) in place of Transpose + Gather."""
        padded_k = -(-k // self.block_size) * self.block_size
        shape_name, base = f"{weight}_gather_shape", gather.name or f"{weight}_gather"
        self.extra_initializers.append(
            numpy_helper.from_array(np.array([n, padded_k * bits // 8], np.int64), shape_name)
        )
        gathered = gather.output[0] if padded_k == k else f"{base}/GatherBlockQuantized/output_0"
        nodes = [
            helper.make_node(
                "Reshape", [f"{weight}_Q{bits}", shape_name], [f"{base}/Reshape/output_0"], name=f"{base}/Reshape"
            ),
            helper.make_node(
                "GatherBlockQuantized",
                [f"{base}/Reshape/output_0", gather.input[1], f"{weight}_scales", *self._zero_points(weight)],
                [gathered],
                name=f"{base}/GatherBlockQuantized",
                domain="com.microsoft",
                bits=bits,
                block_size=self.block_size,
                gather_axis=0,
                quantize_axis=1,
            ),
        ]
        if padded_k != k:
            for suffix, value in (("starts", 0), ("ends", k), ("axes", -1)):
                self.extra_initializers.append(
                    numpy_helper.from_array(np.array([value], np.int64), f"{base}/slice_{suffix}")
                )
            nodes.append(
                helper.make_node(
                    "Slice",
                    [gathered, f"{base}/slice_starts", f"{base}/slice_ends", f"{base}/slice_axes"],
                    [gather.output[0]],
                    name=f"{base}/Slice",
                )
            )
        return nodes


def quantize_onnx(
    source: Path,
    target: Path,
    bits: int,
    block_size: int,
    accuracy_level: int | None = None,
    progress: Callable[[str], None] | None = None,
    symmetric: bool = True,
    head_bits: int | None = None,
    int8_projections: Collection[str] = (),
    hessians: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write ``target`` (+ ``target.data``): ``source``'s graph with MatMul weights as MatMulNBits
    (``symmetric=False``: each block also gets a zero point, its own range's offset;
    ``head_bits``: the lm_head's width, default ``bits``; ``int8_projections``: decoder
    projections, among ``PROJECTIONS``, kept at 8 bits in an int4 model, in every layer;
    ``hessians``: per weight name, its input Hessian: those weights, where 4-bit and asymmetric,
    are rounded by GPTQ instead of to nearest)."""
    head_bits = head_bits or bits
    for width in (bits, head_bits):
        if width not in (4, 8):
            raise CheckpointError(f"expected 4 or 8 bits, got {width}")
    wide = check_projections(int8_projections, "projections", CheckpointError)
    if wide and bits != 4:
        raise CheckpointError(f"expected int8 projections only in an int4 model, got {bits} bits")
    hessians = hessians or {}
    if hessians and symmetric:
        raise CheckpointError("expected asymmetric blocks with GPTQ (its grid has a zero point), got symmetric")
    model = onnx.load(str(source), load_external_data=False)
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    weights = _quantizable_weights(graph, initializers)
    if unknown := sorted(set(hessians) - weights):  # a naming slip would silently fall back to RTN
        raise CheckpointError(f"expected Hessians for the graph's MatMul weights, got {', '.join(unknown[:3])}")
    rewriter = _Rewriter(graph, block_size, accuracy_level, symmetric)
    replaced: dict[str, onnx.NodeProto | list] = {}
    writer = _DataWriter(target.with_name(target.name + ".data"))
    kept: list[TensorProto] = []
    try:
        for tensor in graph.initializer:
            array = _tensor_array(tensor, source.parent)
            if tensor.name not in weights:
                kept.append(writer.add(tensor.name, array) if tensor.data_location == TensorProto.EXTERNAL else tensor)
                continue
            if progress:
                progress(tensor.name)
            k, n = array.shape
            if rewriter.is_head(tensor.name):
                width = head_bits
            else:
                width = 8 if projection_of(tensor.name) in wide else bits
            weight = np.asarray(array, dtype=np.float32)
            if width == 4 and tensor.name in hessians and k % block_size == 0:
                packed, scales, zero_points = gptq_quantize(weight, hessians[tensor.name], block_size)
            else:
                packed, scales, zero_points = block_quantize(weight, width, block_size, symmetric)
            scales = scales.astype(array.dtype)  # MatMulNBits takes scales in the activation type
            kept += [writer.add(f"{tensor.name}_Q{width}", packed), writer.add(f"{tensor.name}_scales", scales)]
            if zero_points is not None:
                kept.append(writer.add(f"{tensor.name}_zero_points", zero_points))
            replaced.update(rewriter.matmul_nodes(tensor.name, k, n, width))
            for transpose, gather in rewriter.tied_gathers(tensor.name):
                replaced[transpose.name] = []
                replaced[gather.name] = rewriter.gather_nodes(gather, tensor.name, k, n, width)
    finally:
        writer.close()
    nodes = []
    for node in graph.node:
        new = replaced.get(node.name, node)
        nodes += new if isinstance(new, list) else [new]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + rewriter.extra_initializers)
    if not any(entry.domain == "com.microsoft" for entry in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target))

"""Edits to the builder's ONNX graph after it is written (the weights stay where they are).

The builder's graph computes the output layer at every input position: ``logits`` is
``[batch, new tokens, vocab]``. A greedy decoder reads only the last position, and over a
prompt the output layer is a large share of the work (SmolLM2: 49152 x 576, about a fifth of
each position's multiply-adds, and more when the body is int4 but the head is not). So the graph
gathers the last position of the final hidden state before the output layer: ``logits`` becomes
``[batch, 1, vocab]``, which is what :meth:`uner.onnx_backend.OnnxExtractor.forward` and
onnxruntime-genai's generator read (both take the last position).
"""

from __future__ import annotations

from pathlib import Path

LAST_POSITION = "uner_last_position"  # the Gather index initializer: [-1]
GATHER_NODE = "uner_gather_last_position"


def logits_at_last_position(model_file: Path) -> bool:
    """Rewrite ``model_file`` (its graph only; external data untouched) so that the output layer
    runs on the last position alone: True when its logits are now the last position's (an edited
    graph is left as it is), False for a graph with no ``logits`` output (left as built)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_file), load_external_data=False)
    graph = model.graph
    if any(node.name == GATHER_NODE for node in graph.node):
        return True
    producers = {output: node for node in graph.node for output in node.output}
    head = producers.get("logits")
    if head is None:
        return False
    while head.op_type == "Cast" and head.input[0] in producers:  # an fp16 graph casts the head's output
        head = producers[head.input[0]]
    graph.initializer.append(helper.make_tensor(LAST_POSITION, TensorProto.INT64, [1], [-1]))
    gathered = f"{head.input[0]}/last_position"
    gather = helper.make_node("Gather", [head.input[0], LAST_POSITION], [gathered], axis=1, name=GATHER_NODE)
    head.input[0] = gathered
    nodes = list(graph.node)
    graph.node.insert(nodes.index(head), gather)
    for output in graph.output:
        if output.name == "logits":  # its sequence axis is now 1
            output.type.tensor_type.shape.dim[1].ClearField("dim_param")
            output.type.tensor_type.shape.dim[1].dim_value = 1
    onnx.save(model, str(model_file))
    return True


#: the graph our backend runs when a folder has it: the decoder plus three inputs (below)
BRANCH_FILE = "model_branches.onnx"


def write_branch_graph(model_file: Path, branch_file: Path) -> bool:
    """Write beside ``model_file`` a copy of its graph (the same external weights file) whose
    GroupQueryAttention nodes also take ``position_ids`` ``[batch, new]`` and ``attention_bias``
    ``[1, 1, new, total]``, and whose output layer runs at ``logit_positions`` ``[k]`` (of the
    batch's single row): with a block-diagonal bias, one call after a text's prefix encodes every
    type's suffix (GroupQueryAttention refuses several new tokens per row after a past when the
    batch has more than one row). The inputs are required, so onnxruntime-genai keeps running
    ``model_file``. False (nothing written) for a graph without the last-position edit or GQA."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_file), load_external_data=False)
    graph = model.graph
    attention = [node for node in graph.node if node.op_type == "GroupQueryAttention"]
    gather = next((node for node in graph.node if node.name == GATHER_NODE), None)
    kv = next((i for i in graph.input if i.name.startswith("past_key_values")), None)
    if not attention or gather is None or kv is None:
        return False
    bias_type = kv.type.tensor_type.elem_type  # the attention's float type
    graph.input.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "new"]))
    graph.input.append(helper.make_tensor_value_info("attention_bias", bias_type, [1, 1, "new", "total"]))
    graph.input.append(helper.make_tensor_value_info("logit_positions", TensorProto.INT64, ["positions"]))
    for node in attention:
        node.input.extend([""] * (11 - len(node.input)))
        node.input[9], node.input[10] = "position_ids", "attention_bias"
    gather.input[1] = "logit_positions"
    kept = [t for t in graph.initializer if t.name != LAST_POSITION]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for output in graph.output:
        if output.name == "logits":
            output.type.tensor_type.shape.dim[1].Clear()
            output.type.tensor_type.shape.dim[1].dim_param = "positions"
    onnx.save(model, str(branch_file))
    return True

"""The VGG16 network as an ONNX graph: the same layers and weights as Keras' VGG16, written without TensorFlow.

This module only describes the network (layer list, kernel shapes, graph); core.runtime runs the graph and
core.model feeds it weights, so imports go one way: model -> runtime -> onnx_vgg. The graph is written
from the Keras layer list (13 conv+ReLU, 2x2 max pools, fc1, and for labels fc2 and the softmax
"predictions" layer) with the Keras weights (read from the same .h5 file, or the same random draw), so no
converter is needed. tests/test_model.py checks that it equals the Keras graph.
"""

from __future__ import annotations

import numpy as np

INPUT_SIZE = (224, 224)  # (height, width) the network sees
VGG_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)  # keras.applications.vgg16, caffe mode
VGG16_BLOCKS = [(3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3)]  # in, out, convs
OPSET = 17
CLASSES = 1000  # ImageNet-1k, in the order of Keras' "predictions" layer (resources/imagenet_classes.json)


def preprocess(pixels: np.ndarray) -> np.ndarray:
    """Keras' VGG16 preprocess_input (caffe mode): (..., 3) uint8 RGB -> float32 BGR minus the ImageNet mean."""
    return pixels[..., ::-1].astype(np.float32) - VGG_MEAN_BGR


def layer_shapes(descriptor: str, labels: bool = False) -> dict[str, tuple[int, ...]]:
    """Kernel shapes (Keras layout: kh, kw, in, out) of the layers `descriptor` ("gem" or "fc1") uses, in order;
    with `labels` also the ImageNet classifier head (fc1, fc2, predictions: Keras' include_top layers)."""
    shapes = {f"block{b}_conv{c}": (3, 3, cin if c == 1 else cout, cout)
              for b, (cin, cout, convs) in enumerate(VGG16_BLOCKS, 1) for c in range(1, convs + 1)}
    if descriptor == "fc1" or labels:
        shapes["fc1"] = (7 * 7 * 512, 4096)
    if labels:
        shapes["fc2"] = (4096, 4096)
        shapes["predictions"] = (4096, CLASSES)
    return shapes


def build_graph(descriptor: str, params: dict[str, tuple[np.ndarray, np.ndarray]], labels: bool = False):
    """An onnx.ModelProto: input "pixels" (n, 224, 224, 3) float32, preprocessed (caffe mode) ->
    output "features": block5_conv3 activations (n, 14, 14, 512) for gem, or fc1 after ReLU (n, 4096);
    with `labels` a second output "probabilities" (n, 1000) float32: the ImageNet class probabilities of
    Keras' top (pool5 flattened -> fc1 -> ReLU -> fc2 -> ReLU -> predictions -> softmax), from the same pass.

    `params` maps layer name -> (kernel, bias) in Keras layout, float32 (layer_shapes(descriptor, labels)).
    Conv and Gemm nodes are named after their Keras layer (e.g. "block1_conv1"), so quantization can address them.
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def dense(x: str, name: str, output: str) -> str:
        kernel, bias = params[name]
        return node("Gemm", [x, const(f"{name}_w", kernel), const(f"{name}_b", bias)], output)

    x = node("Transpose", ["pixels"], "nchw", perm=[0, 3, 1, 2])
    for block, (_, _, convs) in enumerate(VGG16_BLOCKS, 1):
        for conv in range(1, convs + 1):
            name = f"block{block}_conv{conv}"
            kernel, bias = params[name]
            w = const(f"{name}_w", kernel.transpose(3, 2, 0, 1))  # Keras (kh, kw, in, out) -> ONNX (out, in, kh, kw)
            x = node("Conv", [x, w, const(f"{name}_b", bias)], name, kernel_shape=[3, 3], pads=[1] * 4)
            x = node("Relu", [x], f"{name}_relu")
        if block == len(VGG16_BLOCKS) and descriptor == "gem":
            node("Transpose", [x], "features", perm=[0, 2, 3, 1])
            if not labels:
                break
        x = node("MaxPool", [x], f"block{block}_pool", kernel_shape=[2, 2], strides=[2, 2])
    outputs = []
    if descriptor == "gem":
        outputs.append(("features", ["n", INPUT_SIZE[0] // 16, INPUT_SIZE[1] // 16, 512]))
    if descriptor == "fc1" or labels:
        # Keras flattens NHWC; transpose back first so fc1's kernel rows line up.
        flat = node("Flatten", [node("Transpose", [x], "pool_nhwc", perm=[0, 2, 3, 1])], "flat", axis=1)
        fc1 = node("Relu", [dense(flat, "fc1", "fc1")], "features" if descriptor == "fc1" else "fc1_relu")
        if descriptor == "fc1":
            outputs.append(("features", ["n", params["fc1"][0].shape[1]]))
    if labels:
        fc2 = node("Relu", [dense(fc1, "fc2", "fc2")], "fc2_relu")
        node("Softmax", [dense(fc2, "predictions", "predictions")], "probabilities", axis=-1)
        outputs.append(("probabilities", ["n", CLASSES]))
    graph = helper.make_graph(
        nodes, f"vgg16_{descriptor}" + ("_labels" if labels else ""),
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", *INPUT_SIZE, 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])

"""Small real-architecture ONNX models, built with ``onnx.helper``, for the tests of the
whole-network ONNX importer and C generator.

Each builder is a plain function that returns an ``onnx.ModelProto`` (opset 17, default
domain only, IR version 8) with one float32 graph input ``"x"`` and one float32 graph output
``"y"``, both with a symbolic batch dimension ``"N"`` and concrete other dimensions (NCHW).
The node patterns follow what ``torch.onnx.export`` writes for the same layers (a Conv without
bias before each BatchNormalization, ReLU6 as Clip, Flatten then Gemm with ``transB=1``), and
every node has a unique, PyTorch-style name (``/layer1.0/conv1/Conv``, ``/layer1.0/Relu_1``).

The weights are float32 initializers drawn from ``numpy.random.default_rng(seed)``: normal
times ``sqrt(gain / fan_in)`` for Conv and Gemm, with He's gain 2 before a ReLU-like activation
and 1 before a linear output (0.5 for a ResNet branch's last Conv, 50 before activations_zoo's
HardSwish so that all its pieces are reached), so that the activations of a standard-normal
input stay of order one (output RMS 0.5 to 2 for the small models, 4.8 for ResNet-18 at 224,
1.6 for MobileNetV2), and BatchNormalization statistics near the identity (gamma and var
uniform in [0.5, 1.5], beta and mean small normals, epsilon 1e-5).  ReLU6's Clip bounds come
from the shared scalar initializers ``relu6_min`` and ``relu6_max``.

``MODELS`` names the seven small models (one block or two each, cheap enough for every test
run); ``BIG_MODELS`` names the full-size ResNet-18 and MobileNetV2 builders, for benchmarks.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
BATCH = "N"


class _Net:
    """A graph under construction: its nodes, its initializers and the seeded generator that
    draws the weights.  Each op method appends one node and returns its output's name."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self._node_names = set()
        self._init_names = set()

    # -- plumbing ---------------------------------------------------------------------------

    def param(self, name, array):
        """Adds a float32 initializer and returns its name."""
        assert name not in self._init_names, f"initializer {name!r} defined twice"
        self._init_names.add(name)
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op, inputs, scope, **attrs):
        """Adds node ``/{scope}/{op}`` (suffixed ``_1``, ``_2``... on reuse, as PyTorch does)
        with one output, ``{node name}_output_0``, and returns that output's name."""
        base = f"/{scope}/{op}" if scope else f"/{op}"
        name, k = base, 0
        while name in self._node_names:
            k += 1
            name = f"{base}_{k}"
        self._node_names.add(name)
        output = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=name, **attrs))
        return output

    def he(self, shape, fan_in, gain=2.0):
        """Normal weights times ``sqrt(gain / fan_in)``: He's gain 2 before a ReLU-like
        activation, 1 before a linear output, so each layer keeps its input's mean square."""
        return self.rng.standard_normal(shape) * np.sqrt(gain / fan_in)

    def small(self, shape, scale=0.1):
        return self.rng.standard_normal(shape) * scale

    def model(self, x_shape, out, y_shape, name):
        """Renames tensor ``out`` to ``"y"`` and wraps the graph in a checked ModelProto."""
        assert out == self.nodes[-1].output[0], "the output must be the last node's"
        self.nodes[-1].output[0] = "y"
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, *x_shape])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH, *y_shape])],
            initializer=self.inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="convgen-tests",
        )
        onnx.checker.check_model(model)
        return model

    # -- layers -----------------------------------------------------------------------------

    def conv(self, x, cin, cout, k, scope, stride=1, pad=0, group=1, bias=True, gain=2.0):
        fan_in = cin // group * k * k
        p = scope.replace("/", ".")
        w = self.he((cout, cin // group, k, k), fan_in, gain)
        inputs = [x, self.param(f"{p}.weight", w)]
        if bias:
            inputs.append(self.param(f"{p}.bias", self.small(cout, 0.05)))
        return self.node(
            "Conv", inputs, scope, dilations=[1, 1], group=group, kernel_shape=[k, k],
            pads=[pad] * 4, strides=[stride, stride],
        )

    def bn(self, x, c, scope):
        p = scope.replace("/", ".")
        inputs = [
            x,
            self.param(f"{p}.weight", self.rng.uniform(0.5, 1.5, c)),
            self.param(f"{p}.bias", self.small(c)),
            self.param(f"{p}.running_mean", self.small(c)),
            self.param(f"{p}.running_var", self.rng.uniform(0.5, 1.5, c)),
        ]
        return self.node("BatchNormalization", inputs, scope, epsilon=1e-5, momentum=0.9)

    def relu(self, x, scope):
        return self.node("Relu", [x], scope)

    def relu6(self, x, scope):
        if "relu6_min" not in self._init_names:
            self.param("relu6_min", np.float32(0.0))
            self.param("relu6_max", np.float32(6.0))
        return self.node("Clip", [x, "relu6_min", "relu6_max"], scope)

    def act(self, x, kind, scope):
        if kind is None:
            return x
        return {"relu": self.relu, "relu6": self.relu6}[kind](x, scope)

    def conv_bn(self, x, cin, cout, k, scope, stride=1, pad=0, group=1, act=None, gain=None):
        """Conv (no bias) + BatchNormalization + an optional ReLU or ReLU6, under ``scope``."""
        if gain is None:
            gain = 1.0 if act is None else 2.0
        y = self.conv(x, cin, cout, k, f"{scope}/conv", stride, pad, group, False, gain)
        return self.act(self.bn(y, cout, f"{scope}/bn"), act, scope)

    def gemm(self, x, fin, fout, scope, gain=1.0):
        """A PyTorch Linear: Gemm with a (fout, fin) weight and ``transB=1``."""
        p = scope.replace("/", ".")
        w = self.param(f"{p}.weight", self.he((fout, fin), fin, gain))
        b = self.param(f"{p}.bias", self.small(fout, 0.05))
        return self.node("Gemm", [x, w, b], scope, alpha=1.0, beta=1.0, transB=1)

    def pool(self, op, x, k, stride, scope, pad=0, **attrs):
        return self.node(
            op, [x], scope, kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride], **attrs
        )

    def flatten(self, x, scope=""):
        return self.node("Flatten", [x], scope, axis=1)

    def head(self, x, c, classes):
        """GlobalAveragePool, Flatten, then a Gemm classifier."""
        return self.gemm(self.flatten(self.node("GlobalAveragePool", [x], "")), c, classes, "fc")

    # -- blocks -----------------------------------------------------------------------------

    def basic_block(self, x, cin, cout, stride, scope):
        """A ResNet basic block, with a 1x1 Conv + BN shortcut where the shape changes.  The
        branch's last Conv has half gain, so that the Adds do not compound the activations'
        scale over ResNet-18's eight blocks (12 at the output with gain 1, 5 with 0.5)."""
        y = self.conv_bn(x, cin, cout, 3, f"{scope}/conv1", stride, 1, act="relu")
        y = self.conv_bn(y, cout, cout, 3, f"{scope}/conv2", 1, 1, gain=0.5)
        if stride != 1 or cin != cout:
            x = self.conv_bn(x, cin, cout, 1, f"{scope}/downsample", stride)
        return self.relu(self.node("Add", [y, x], scope), scope)

    def inverted_residual(self, x, cin, cout, stride, expand, scope):
        """A MobileNetV2 inverted residual: 1x1 expansion (absent for ``expand == 1``), 3x3
        depthwise, linear 1x1 projection, and the residual Add where the shape is kept."""
        hidden = cin * expand
        y = x
        if expand != 1:
            y = self.conv_bn(y, cin, hidden, 1, f"{scope}/expand", act="relu6")
        y = self.conv_bn(y, hidden, hidden, 3, f"{scope}/dw", stride, 1, hidden, act="relu6")
        y = self.conv_bn(y, hidden, cout, 1, f"{scope}/project")
        if stride == 1 and cin == cout:
            y = self.node("Add", [x, y], scope)
        return y


def lenet5(seed: int = 0) -> onnx.ModelProto:
    """LeNet-5: (N, 1, 32, 32) -> (N, 10)."""
    net = _Net(seed)
    y = net.relu(net.conv("x", 1, 6, 5, "conv1"), "relu1")
    y = net.pool("MaxPool", y, 2, 2, "pool1")
    y = net.relu(net.conv(y, 6, 16, 5, "conv2"), "relu2")
    y = net.flatten(net.pool("MaxPool", y, 2, 2, "pool2"))
    y = net.relu(net.gemm(y, 400, 120, "fc1", gain=2.0), "relu3")
    y = net.relu(net.gemm(y, 120, 84, "fc2", gain=2.0), "relu4")
    y = net.gemm(y, 84, 10, "fc3")
    return net.model((1, 32, 32), y, (10,), "lenet5")


def resnet_basic_block(seed: int = 0) -> onnx.ModelProto:
    """A 3x3 Conv+BN+ReLU stem, one downsampling ResNet basic block (16 -> 32 channels,
    stride 2, 1x1 Conv+BN shortcut) and a classifier: (N, 16, 16, 16) -> (N, 10)."""
    net = _Net(seed)
    y = net.conv_bn("x", 16, 16, 3, "stem", 1, 1, act="relu")
    y = net.basic_block(y, 16, 32, 2, "layer1.0")
    return net.model((16, 16, 16), net.head(y, 32, 10), (10,), "resnet_basic_block")


def mobilenetv2_inverted_residual(seed: int = 0) -> onnx.ModelProto:
    """Two MobileNetV2 inverted residuals with expansion 6 (16 -> 16 at stride 1 with the
    residual Add, then 16 -> 24 at stride 2) and a classifier: (N, 16, 14, 14) -> (N, 10)."""
    net = _Net(seed)
    y = net.inverted_residual("x", 16, 16, 1, 6, "features.0")
    y = net.inverted_residual(y, 16, 24, 2, 6, "features.1")
    return net.model((16, 14, 14), net.head(y, 24, 10), (10,), "mobilenetv2_inverted_residual")


def squeezenet_fire(seed: int = 0, size: int = 15) -> onnx.ModelProto:
    """A SqueezeNet Fire module (squeeze 32 -> 8, expand 8 -> 16 + 16, Concat), a 3x3 stride-2
    MaxPool with ``ceil_mode=1``, a 1x1 Conv classifier, GlobalAveragePool and Flatten:
    (N, 32, size, size) -> (N, 10).  At the default size 15 the ceil mode changes nothing
    (7x7 either way); an even ``size`` (14: 7x7 against 6x6) makes it count."""
    net = _Net(seed)
    s = net.relu(net.conv("x", 32, 8, 1, "fire/squeeze"), "fire/squeeze")
    e1 = net.relu(net.conv(s, 8, 16, 1, "fire/expand1x1"), "fire/expand1x1")
    e3 = net.relu(net.conv(s, 8, 16, 3, "fire/expand3x3", pad=1), "fire/expand3x3")
    y = net.node("Concat", [e1, e3], "fire", axis=1)
    y = net.pool("MaxPool", y, 3, 2, "pool", ceil_mode=1)
    y = net.node("GlobalAveragePool", [net.conv(y, 32, 10, 1, "classifier", gain=1.0)], "")
    return net.model((32, size, size), net.flatten(y), (10,), "squeezenet_fire")


def se_block(seed: int = 0) -> onnx.ModelProto:
    """A 3x3 Conv+ReLU, a squeeze-and-excitation gate (GlobalAveragePool, 1x1 Conv 32 -> 8,
    ReLU, 1x1 Conv 8 -> 32, Sigmoid) multiplied in by broadcast, the residual Add with the
    input and a ReLU: (N, 32, 8, 8) -> (N, 32, 8, 8)."""
    net = _Net(seed)
    t = net.relu(net.conv("x", 32, 32, 3, "conv", pad=1), "conv")
    s = net.node("GlobalAveragePool", [t], "se")
    s = net.relu(net.conv(s, 32, 8, 1, "se/fc1"), "se")
    s = net.node("Sigmoid", [net.conv(s, 8, 32, 1, "se/fc2", gain=1.0)], "se")
    y = net.node("Add", [net.node("Mul", [t, s], "se"), "x"], "")
    return net.model((32, 8, 8), net.relu(y, ""), (32, 8, 8), "se_block")


def densenet_transition(seed: int = 0) -> onnx.ModelProto:
    """A DenseNet dense layer (BN, ReLU, 3x3 Conv 24 -> 12, Concat with its input: 36
    channels) and a transition (BN, ReLU, 1x1 Conv 36 -> 18, 2x2 stride-2 AveragePool):
    (N, 24, 8, 8) -> (N, 18, 4, 4)."""
    net = _Net(seed)
    y = net.relu(net.bn("x", 24, "dense/norm"), "dense")
    y = net.conv(y, 24, 12, 3, "dense/conv", pad=1, bias=False, gain=1.0)
    y = net.node("Concat", ["x", y], "dense", axis=1)
    y = net.relu(net.bn(y, 36, "transition/norm"), "transition")
    y = net.conv(y, 36, 18, 1, "transition/conv", bias=False, gain=1.0)
    y = net.pool("AveragePool", y, 2, 2, "transition/pool")
    return net.model((24, 8, 8), y, (18, 4, 4), "densenet_transition")


def activations_zoo(seed: int = 0) -> onnx.ModelProto:
    """A chain of the less common elementwise ops between Convs: LeakyRelu, HardSigmoid, Mul by
    a per-channel initializer, HardSwish, Add of a scalar initializer, Identity, inference
    Dropout, a 3x3 AveragePool excluding the padding, and an Add of a Constant node's tensor:
    (N, 8, 6, 6) -> (N, 4, 6, 6)."""
    net = _Net(seed)
    y = net.conv("x", 8, 8, 3, "conv1", pad=1)
    y = net.node("LeakyRelu", [y], "", alpha=0.1)
    y = net.conv(y, 8, 8, 1, "conv2", gain=1.0)
    y = net.node("HardSigmoid", [y], "", alpha=0.2, beta=0.5)
    y = net.node("Mul", [y, net.param("scale", net.rng.uniform(0.5, 1.5, (8, 1, 1)))], "")
    # A large gain, so that HardSwish sees all three of its pieces (x <= -3, between, x >= 3).
    y = net.node("HardSwish", [net.conv(y, 8, 8, 1, "conv3", gain=50.0)], "")
    y = net.node("Add", [y, net.param("shift", np.float32(0.25))], "")
    y = net.node("Dropout", [net.node("Identity", [y], "")], "")
    y = net.pool("AveragePool", y, 3, 1, "pool", pad=1, count_include_pad=0)
    y = net.conv(y, 8, 4, 1, "conv4", gain=1.0)
    offset = numpy_helper.from_array(net.small((4, 1, 1)).astype(np.float32), "offset")
    y = net.node("Add", [y, net.node("Constant", [], "", value=offset)], "")
    return net.model((8, 6, 6), y, (4, 6, 6), "activations_zoo")


def resnet18_like(seed: int = 0, size: int = 224) -> onnx.ModelProto:
    """ResNet-18 (7x7 stride-2 stem, 3x3 stride-2 MaxPool, four stages of two basic blocks
    with 64, 128, 256 and 512 channels, 1000 classes): (N, 3, size, size) -> (N, 1000)."""
    net = _Net(seed)
    y = net.conv_bn("x", 3, 64, 7, "stem", 2, 3, act="relu")
    y = net.pool("MaxPool", y, 3, 2, "maxpool", pad=1)
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            y = net.basic_block(y, cin, cout, stride, f"layer{stage}.{block}")
            cin = cout
    return net.model((3, size, size), net.head(y, 512, 1000), (1000,), "resnet18_like")


#: MobileNetV2's inverted residual settings: expansion t, output channels c, repeats n and
#: first stride s.
MOBILENETV2_TABLE = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenetv2_like(seed: int = 0, size: int = 224) -> onnx.ModelProto:
    """MobileNetV2 at width 1.0 (3x3 stride-2 stem with 32 channels, the 17 inverted residuals
    of the standard table, 1x1 Conv to 1280, 1000 classes): (N, 3, size, size) -> (N, 1000)."""
    net = _Net(seed)
    y = net.conv_bn("x", 3, 32, 3, "features.0", 2, 1, act="relu6")
    cin, index = 32, 1
    for t, c, n, s in MOBILENETV2_TABLE:
        for i in range(n):
            y = net.inverted_residual(y, cin, c, s if i == 0 else 1, t, f"features.{index}")
            cin, index = c, index + 1
    y = net.conv_bn(y, cin, 1280, 1, f"features.{index}", act="relu6")
    return net.model((3, size, size), net.head(y, 1280, 1000), (1000,), "mobilenetv2_like")


MODELS = {
    "lenet5": lenet5,
    "resnet_basic_block": resnet_basic_block,
    "mobilenetv2_inverted_residual": mobilenetv2_inverted_residual,
    "squeezenet_fire": squeezenet_fire,
    "se_block": se_block,
    "densenet_transition": densenet_transition,
    "activations_zoo": activations_zoo,
}

BIG_MODELS = {
    "resnet18_like": resnet18_like,
    "mobilenetv2_like": mobilenetv2_like,
}

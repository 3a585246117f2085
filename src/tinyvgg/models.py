"""Sequential models and the VGG family (Simonyan & Zisserman, 2014).

A VGG network is a stack of 3x3 convolutions (each followed by ReLU), with a
2x2 max-pool after each of five blocks, and three dense layers on top. The four
configurations built here differ only in how many 3x3 convolutions each block has:

    A (vgg11): 1, 1, 2, 2, 2      B (vgg13): 2, 2, 2, 2, 2
    D (vgg16): 2, 2, 3, 3, 3      E (vgg19): 2, 2, 4, 4, 4

with 64, 128, 256, 512, 512 channels in blocks 1-5. (The paper's other two are not
built: A-LRN adds local response normalization to A, which did not help, and C is B
plus one 1x1 convolution in each of blocks 3-5.) ``batch_norm=True`` adds batch
normalization after every convolution, the later VGG-BN variants. Five pools divide the
image size by 32, so a 224x224 image reaches the top as 7x7x512 and a 32x32
one as 1x1x512.

>>> model = vgg16(num_classes=1000, input_shape=(224, 224, 3), init="zeros")  # zeros: fast to build
>>> model.num_params()
138357544
"""
import numpy as np

from . import fastconv
from .backend import get_array_module
from .layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, ImageCentering, Layer, MaxPool2D, ReLU

#: Which classes :func:`vgg` builds: the reference layers a student reads and writes, or their fast
#: subclasses (:mod:`tinyvgg.fastconv`), which compute the same numbers faster.
KERNELS = ("fast", "reference")
#: What :func:`vgg` builds unless told: the reference layers, the code the lessons teach and run.
DEFAULT_KERNELS = "reference"
#: What the commands (train, evaluate, predict, export) build: the fast classes. The student version's
#: commands build the layers the student writes (its fast kernels are blanks to fill in).
COMMAND_KERNELS = "fast"  # STUDENT: COMMAND_KERNELS = "reference"

VGG_CONFIGS = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
BLOCK_CHANNELS = (64, 128, 256, 512, 512)


class Sequential:
    """Layers applied one after another; backward runs them in reverse.

    layers: a list of ``(name, layer)`` pairs. Names are stable keys for
    parameters (``block1_conv1.W``), checkpoints and optimizer state.
    input_shape: the per-example input shape ``(H, W, C)``, for ``summary()``.
    config: the keyword arguments that rebuild this model (saved in checkpoints).
    """

    def __init__(self, layers, input_shape=None, config=None):
        names = [name for name, _ in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}.")
        self.names = names
        self.layers = [layer for _, layer in layers]
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.config = dict(config or {})

    def __getitem__(self, name):
        return self.layers[self.names.index(name)]

    def forward(self, x, train=False):
        """Run every layer; with train=True each caches what its backward needs."""
        for layer in self.layers:
            x = layer.forward(x, train=train)
        return x

    def backward(self, dout):
        """Backpropagate dL/d(output) through every layer, last to first; fills each layer's grads.

        Returns dL/dx, or None when :attr:`input_grad` is False and the first layer skips it.
        """
        for layer in reversed(self.layers):
            if dout is None:  # a layer that passes nothing back: the ones before it have no weights to learn
                break
            dout = layer.backward(dout)
        return dout

    @property
    def input_grad(self):
        """Whether :meth:`backward` computes dL/dx for the model's input. A trainer sets it to False:
        the input is data, and the first convolution's dx costs as much as its dW. It is set on every
        layer up to the first with weights (a layer before it, such as ImageCentering, only prepares
        the input): the backward pass then stops at that layer."""
        return self.layers[0].input_grad

    @input_grad.setter
    def input_grad(self, value):
        for layer in self.layers:
            layer.input_grad = bool(value)
            if layer.params:
                break

    def hold_randomness(self, hold=True):
        """Hold every layer's random draws (dropout masks) at their last values, or release them."""
        for layer in self.layers:
            layer.hold_randomness(hold)

    def named_params(self, trainable_only=False):
        """``{"block1_conv1.W": array, ...}`` in layer order; the arrays themselves, not copies.

        ``trainable_only`` leaves out frozen layers (``layer.trainable = False``):
        what an optimizer should be given.
        """
        return {f"{name}.{key}": value for name, layer in zip(self.names, self.layers)
                if layer.trainable or not trainable_only for key, value in layer.params.items()}

    def named_buffers(self):
        """``{"block1_bn1.running_mean": array, ...}``: state saved with the weights but never trained."""
        return {f"{name}.{key}": value for name, layer in zip(self.names, self.layers)
                for key, value in layer.buffers.items()}

    def named_grads(self, trainable_only=False):
        """The gradients of the last backward pass, keyed like :meth:`named_params`."""
        return {f"{name}.{key}": layer.grads[key] for name, layer in zip(self.names, self.layers)
                if layer.trainable or not trainable_only for key in layer.params}

    def load_params(self, params, buffers=None):
        """Copy arrays into the parameters (and ``buffers``, e.g. running statistics), in place;
        names and shapes must match exactly. ``buffers=None`` leaves the buffers as they are."""
        targets = [("parameters", self.named_params(), params)]
        if buffers is not None:
            targets.append(("buffers", self.named_buffers(), buffers))
        for what, own, given in targets:
            missing, unexpected = sorted(set(own) - set(given)), sorted(set(given) - set(own))
            if missing or unexpected:
                raise ValueError(f"the {what} do not match this model: missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]}; was it saved from another model configuration?")
            for name, value in given.items():
                if tuple(value.shape) != tuple(own[name].shape):
                    raise ValueError(f"{name} has shape {tuple(value.shape)} but this model needs "
                                     f"{tuple(own[name].shape)}; was it saved from another model configuration?")
        for _, own, given in targets:
            for name, value in given.items():
                target = own[name]
                target[...] = get_array_module(target).asarray(value, dtype=target.dtype)

    def num_params(self):
        return int(sum(p.size for p in self.named_params().values()))

    def to(self, backend):
        """Move every parameter to ``"numpy"`` or ``"cupy"``; returns self."""
        for layer in self.layers:
            layer.to(backend)
        return self

    def summary(self, input_shape=None, batch_size=1):
        """A Keras-style table: name, output shape, parameters, plus activation
        memory (float32 output of each layer for ``batch_size`` examples) and
        multiply-adds per example, with totals."""
        shape = tuple(input_shape or self.input_shape)
        rows, total_bytes, total_macs = [], 0, 0
        for name, layer in zip(self.names, self.layers):
            macs = layer.multiply_adds(shape)
            shape = layer.output_shape(shape)
            params = sum(int(np.prod(p.shape)) for p in layer.params.values())
            nbytes = 4 * batch_size * int(np.prod(shape))
            total_bytes, total_macs = total_bytes + nbytes, total_macs + macs
            rows.append((f"{name} ({type(layer).__name__})", str((None,) + tuple(shape)),
                         f"{params:,}", _human_bytes(nbytes), _human_count(macs)))
        header = ("Layer (type)", "Output shape", "Params", f"Activations (x{batch_size})", "Mult-adds")
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(5)]
        fmt = "{:<%d}  {:<%d}  {:>%d}  {:>%d}  {:>%d}" % tuple(widths)
        rule = "-" * len(fmt.format(*header))
        lines = [rule, fmt.format(*header), rule] + [fmt.format(*r) for r in rows] + [rule]
        kernels = sorted({type(layer).__name__ for layer in self.layers  # a fast class, or one built on it
                          if isinstance(layer, tuple(_FAST_TO_REFERENCE))})
        lines += [f"Total params: {self.num_params():,}",
                  "Kernels: " + (f"fast ({', '.join(kernels)}, tinyvgg.fastconv)" if kernels else
                                 "reference (tinyvgg.layers)"),
                  f"Activation memory (forward outputs, batch {batch_size}, float32): {_human_bytes(total_bytes)}",
                  f"Multiply-adds per example (forward): {_human_count(total_macs)}", rule]
        return "\n".join(lines)


class Residual(Layer):
    """A residual block (He et al., 2016): out = x + F(x), with F a stack of layers.

    layers: ``(name, layer)`` pairs, as :class:`Sequential` takes them; F (``self.body``, a Sequential)
    must give an output of its input's shape, since the two are added. x: (N, ...) -> out: the same shape.

    Backward: x reaches the output along two paths, the identity and F, so (lesson 7's fan-out rule)
    dx = dout + F.backward(dout), and F's own backward pass fills its layers' gradients. Through a stack
    of such blocks the gradient always has the path on which every Jacobian is the identity (lesson 22).

    The block's ``params``, ``grads`` and ``buffers`` are its layers', keyed ``"conv1.W"``...: in a
    Sequential, a block named ``res1`` contributes ``res1.conv1.W``, so optimizers, checkpoints and
    ``summary()`` see every weight. A block is frozen (``trainable``) as a whole. The tools that look at
    a model's layers one by one (precise batch-norm statistics, the data-parallel dropout draws, ONNX
    export) do not look inside a block; tinyvgg's VGG models use none.
    """

    def __init__(self, layers):
        # no Layer.__init__: params, grads and buffers are the body's, read through the properties below
        self.body = Sequential(layers)
        self.cache = None
        self.trainable = True
        self.input_grad = True  # dx is dout plus F's share: computed always

    params = property(lambda self: self.body.named_params(), doc="F's parameters, ``{'conv1.W': array}``.")
    grads = property(lambda self: self.body.named_grads(), doc="F's gradients from the last backward pass.")
    buffers = property(lambda self: self.body.named_buffers(), doc="F's buffers (batch-norm statistics).")

    def __repr__(self):
        return f"Residual({', '.join(self.body.names)})"

    def forward(self, x, train=False):
        """out = x + F(x); with train=True F's layers cache what their backward passes need."""
        self.output_shape(x.shape[1:])  # a sentence, not a broadcast, when F changes the shape
        # [part residual] hint: F is self.body, a Sequential: run it on x, then add what skipped it
        ### BEGIN SOLUTION
        return x + self.body.forward(x, train=train)
        ### END SOLUTION

    def backward(self, dout):
        """dL/dx = dout (the identity path) + F's backward pass of dout (which fills F's gradients)."""
        # [part residual] hint: x fed two paths; each sends back its share of dout (lesson 7's fan-out)
        ### BEGIN SOLUTION
        return dout + self.body.backward(dout)
        ### END SOLUTION

    def hold_randomness(self, hold=True):
        self.body.hold_randomness(hold)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.body.layers:
            shape = layer.output_shape(shape)
        if shape != tuple(input_shape):
            raise ValueError(f"a residual block's F must keep its input's shape {tuple(input_shape)}, "
                             f"but it gives {shape}; check the layer sizes.")
        return shape

    def multiply_adds(self, input_shape):
        total, shape = 0, tuple(input_shape)
        for layer in self.body.layers:
            total, shape = total + layer.multiply_adds(shape), layer.output_shape(shape)
        return total  # the addition is not a multiply-add

    def to(self, backend):
        self.body.to(backend)
        self.cache = None
        return self


def _human_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _human_count(n):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


_FAST_TO_REFERENCE = {fast: reference for reference, fast in fastconv.FAST_CLASSES.items()}


def layer_classes(kernels):
    """``{Conv2D: the class to build, ...}`` for ``kernels`` "fast" or "reference" (None: the default)."""
    kernels = DEFAULT_KERNELS if kernels is None else kernels
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}.")
    reference = {cls: cls for cls in (Conv2D, MaxPool2D, BatchNorm2D, Dense, ReLU, ImageCentering)}
    return {**reference, **fastconv.FAST_CLASSES} if kernels == "fast" else reference


def vgg(depth="vgg16", num_classes=1000, input_shape=(224, 224, 3), width=1.0, fc_units=4096,
        dropout=0.5, include_top=True, init="he_normal", batch_norm=False, head_init=None, logits_init=None, seed=0,
        rng=None, dtype=np.float32, kernels=None, center_images=False, first_conv_init=None):
    """Build a VGG network (configuration A, B, D or E of the paper).

    depth: "vgg11" | "vgg13" | "vgg16" | "vgg19". input_shape: (H, W, C), H and W
    divisible by 32. width: multiplies every channel count (0.25 gives a
    network 16x cheaper, for quick CPU runs). fc_units: width of the two hidden
    dense layers (4096 in the paper). include_top=False stops after the last
    pool: the convolutional base as a feature extractor. init: the weight
    initializer's name (He for ReLU stacks). batch_norm=True builds the VGG-BN variant
    (torchvision's ``vgg16_bn``): a :class:`~tinyvgg.layers.BatchNorm2D` after every
    convolution, before its ReLU. head_init: the initializer of the three dense layers
    (default: ``init`` for fc1 and fc2, Glorot for the logits); "small_normal" (torchvision's
    N(0, 0.01)) is what the paper's 4096-unit head with dropout 0.5 needs to learn. logits_init: the
    initializer of the last layer alone (default: as head_init says); "zeros" starts every image at
    equal scores for every class (the loss at exactly ln(classes)), so that the first steps learn
    features instead of first undoing a random head's confident guesses (what ``python -m
    tinyvgg.train`` builds: on 1,280 images it took 5 seeds of 5 past 80% in 10 epochs, against 1 of 5
    with Glorot's random logits; benchmarks/README.md). rng: a
    ``numpy.random.Generator`` for the weights and the dropout masks (else one seeded with ``seed``).
    center_images=True puts an :class:`~tinyvgg.layers.ImageCentering` layer first, which takes each
    image's own mean colour off; first_conv_init: the initializer of the first convolution alone
    (default: ``init``). ``python -m tinyvgg.train`` builds both (``--centering``, with
    "he_normal_zero_mean", filters blind to flat colour): on 1,280 shape images validation accuracy
    after three epochs went from 0.15-0.27 to 0.36-0.57 over five seeds (benchmarks/README.md).
    kernels: "fast" (:mod:`tinyvgg.fastconv`'s classes) or "reference" (the layers of
    :mod:`tinyvgg.layers`, line by line what the lessons teach); None means ``DEFAULT_KERNELS``, the reference layers.
    Both give the same numbers and the same parameter names; it is not saved in ``config``.
    """
    if depth not in VGG_CONFIGS:
        raise ValueError(f"unknown model {depth!r}: choose one of {', '.join(VGG_CONFIGS)}.")
    H, W, C = input_shape
    if H % 32 or W % 32 or H < 32 or W < 32:
        raise ValueError(f"VGG needs an image size divisible by 32 (five 2x2 pools), got {H}x{W}; "
                         "try 32, 64, 128 or 224.")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}.")
    config = dict(depth=depth, num_classes=num_classes, input_shape=tuple(input_shape), width=width,
                  fc_units=fc_units, dropout=dropout, include_top=include_top, init=init, batch_norm=batch_norm)
    for key, value in (("head_init", head_init), ("logits_init", logits_init), ("first_conv_init", first_conv_init),
                       ("center_images", center_images or None)):
        if value is not None:  # recorded only when given, so older configurations read the same
            config[key] = value
    rng = np.random.default_rng(seed) if rng is None else rng
    cls = layer_classes(kernels)
    conv, bn, relu, pool, dense = cls[Conv2D], cls[BatchNorm2D], cls[ReLU], cls[MaxPool2D], cls[Dense]
    layers, channels = [("centering", cls[ImageCentering]())] if center_images else [], C
    for block, (repeats, base) in enumerate(zip(VGG_CONFIGS[depth], BLOCK_CHANNELS), start=1):
        out_channels = max(1, round(base * width))
        for i in range(1, repeats + 1):
            conv_init = (first_conv_init or init) if (block, i) == (1, 1) else init
            layers.append((f"block{block}_conv{i}",
                           conv(channels, out_channels, 3, init=conv_init, rng=rng, dtype=dtype)))
            if batch_norm:
                layers.append((f"block{block}_bn{i}", bn(out_channels, dtype=dtype)))
            layers.append((f"block{block}_relu{i}", relu()))
            channels = out_channels
        layers.append((f"block{block}_pool", pool()))
    if include_top:
        features = (H // 32) * (W // 32) * channels
        layers += [("flatten", Flatten()),
                   ("fc1", dense(features, fc_units, init=head_init or init, rng=rng, dtype=dtype)),
                   ("fc1_relu", relu()),
                   ("fc1_dropout", Dropout(dropout, rng=rng)),
                   ("fc2", dense(fc_units, fc_units, init=head_init or init, rng=rng, dtype=dtype)),
                   ("fc2_relu", relu()),
                   ("fc2_dropout", Dropout(dropout, rng=rng)),
                   # the logits feed softmax, not ReLU: Glorot (Keras' default) suits them
                   ("predictions", dense(fc_units, num_classes, init=logits_init or head_init or "glorot_uniform",
                                         rng=rng, dtype=dtype))]
    return Sequential(layers, input_shape=input_shape, config=config)


def vgg11(**kwargs):
    """VGG configuration A: 8 convolutions + 3 dense layers."""
    return vgg("vgg11", **kwargs)


def vgg13(**kwargs):
    """VGG configuration B: 10 convolutions + 3 dense layers."""
    return vgg("vgg13", **kwargs)


def vgg16(**kwargs):
    """VGG configuration D: 13 convolutions + 3 dense layers (138M parameters at 224x224)."""
    return vgg("vgg16", **kwargs)


def vgg19(**kwargs):
    """VGG configuration E: 16 convolutions + 3 dense layers."""
    return vgg("vgg19", **kwargs)


def build_model(config, rng=None, seed=0, dtype=np.float32, kernels=None):
    """Rebuild a model from the ``config`` dict saved with it (e.g. in a checkpoint)."""
    config = dict(config)
    config["input_shape"] = tuple(config["input_shape"])
    return vgg(**config, rng=rng, seed=seed, dtype=dtype, kernels=kernels)

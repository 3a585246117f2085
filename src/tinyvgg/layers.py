"""The layers of VGG, each with a hand-written forward and backward pass: the reference code.

Every layer has the same small interface::

    out = layer.forward(x, train=False)   # caches what backward needs only if train
    dx  = layer.backward(dout)            # fills layer.grads, returns dL/dx
    layer.params, layer.grads             # dicts of arrays with the same keys

``backward`` receives dL/d(out) and returns dL/dx by the chain rule; it never
modifies ``dout``. Activations are NHWC ``(N, H, W, C)``, conv weights HWIO
``(KH, KW, C_in, C_out)`` and dense weights ``(in, out)``. Each method asks its
input which array library to use (``xp``), so the same code runs on NumPy and
CuPy. The derivations live in the lessons; the gradient checks in
``tinyvgg.gradcheck`` prove each backward pass right.

This is the code the lessons teach and students write: plain array code, no
speed tricks. The faster classes of :mod:`tinyvgg.fastconv` (``FastConv2D`` and
friends) compute the same numbers and are tested against these; a model picks
one set or the other (``vgg(kernels="fast" | "reference")``).
"""
import numpy as np

from .backend import get_array_module, to_device
from .im2col import col2im, im2col, output_hw, resolve_padding
from .init import get_initializer

#: Largest im2col buffer (bytes) a convolution builds at once. The batch is
#: processed in chunks of images that fit; results do not depend on it.
#: VGG16's first layer at 224x224 needs 116 MB per image in float32.
IM2COL_MAX_BYTES = 256 * 2**20


class Layer:
    """Base class: no parameters, identity shape. Subclasses override what differs.

    ``input_grad``: when False, ``backward`` may skip dL/dx and return None. A model sets it
    on its first layer while training (:attr:`tinyvgg.models.Sequential.input_grad`): that
    layer's input is the data, whose gradient nobody needs. Layers whose dx costs little
    compute it anyway.
    """

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}  # state that is saved but not trained, e.g. BatchNorm2D's running statistics
        self.cache = None
        self.trainable = True  # False: the optimizer leaves the parameters alone (fine-tuning)
        self.input_grad = True

    def forward(self, x, train=False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def hold_randomness(self, hold=True):
        """Make every later training forward pass draw the same random numbers as the last one
        (``hold=False`` lets it draw afresh again). A gradient check needs this: it evaluates
        the loss many times, and it must be the same function each time. Layers that draw
        nothing (all but :class:`Dropout`) have nothing to hold."""

    def output_shape(self, input_shape):
        """Per-example output shape for a per-example input shape (no batch axis)."""
        return tuple(input_shape)

    def multiply_adds(self, input_shape):
        """Multiply-adds of the forward pass for one example (0 for layers without weights)."""
        return 0

    def to(self, backend):
        """Move parameters, gradients and buffers to ``"numpy"`` or ``"cupy"``; returns self."""
        self.params = {k: to_device(v, backend) for k, v in self.params.items()}
        self.grads = {k: to_device(v, backend) for k, v in self.grads.items()}
        self.buffers = {k: to_device(v, backend) for k, v in self.buffers.items()}
        self.cache = None
        return self

    def __repr__(self):
        return f"{type(self).__name__}()"


def _check_input(layer, x, ndim, channels, what):
    if x.ndim != ndim or x.shape[-1] != channels:
        raise ValueError(
            f"{type(layer).__name__} expects input of shape {what} with {channels} in the last axis, "
            f"got {tuple(x.shape)}; check the layer sizes or the image shape."
        )


class Conv2D(Layer):
    """KxK convolution, "same" zero padding by default: out = im2col(x) @ W + b.

    x: (N, H, W, C_in) -> out: (N, Ho, Wo, C_out); W: (K, K, C_in, C_out); b: (C_out,).
    ``stride`` s and ``dilation`` d (keywords, 1 in VGG; lesson 20): the window moves s pixels at
    a time and its taps sit d pixels apart, Ho = floor((H + 2p - d*(K-1) - 1) / s) + 1. "same"
    padding is d*(K-1)/2: the size kept at stride 1, ceil(H / s) at stride s (the stride-1 output
    at every s-th row and column).
    Backward: the dense layer's rules applied to the columns, dW = cols.T @ dout,
    dcols = dout @ W.T, and col2im adds each column's gradient back where it came from.

    The batch is processed in chunks so that the im2col buffer stays under
    ``IM2COL_MAX_BYTES`` (a memory cap, not a speed trick: VGG16's first layer at
    224x224 needs 116 MB of columns per image). Backward recomputes each chunk's
    columns from the cached input instead of keeping them: a copy is cheaper than
    9x the memory.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, padding="same",
                 init="he_normal", rng=None, dtype=np.float32, *, stride=1, dilation=1):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        for name, value in (("stride", stride), ("dilation", dilation)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Conv2D's {name} must be a positive integer (1 in VGG), got {value!r}.")
        self.stride, self.dilation = stride, dilation
        self.pad = resolve_padding(kernel_size, padding, dilation)
        rng = np.random.default_rng() if rng is None else rng
        shape = (kernel_size, kernel_size, in_channels, out_channels)
        self.params = {
            "W": get_initializer(init)(shape, rng).astype(dtype),
            "b": np.zeros(out_channels, dtype=dtype),
        }

    def __repr__(self):
        K = self.kernel_size
        steps = "".join(f", {name}={value}" for name, value in (("stride", self.stride), ("dilation", self.dilation))
                        if value != 1)
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, kernel_size={K}, " \
               f"padding={self.padding!r}{steps})"

    def output_shape(self, input_shape):
        Ho, Wo = output_hw((1, *input_shape), self.kernel_size, self.pad,  # a clear error if K does not fit
                           self.stride, self.dilation)
        return Ho, Wo, self.out_channels

    def multiply_adds(self, input_shape):
        Ho, Wo, F = self.output_shape(input_shape)
        return Ho * Wo * self.kernel_size**2 * self.in_channels * F

    def _chunks(self, x):
        """Slices of the batch whose im2col buffer fits in ``IM2COL_MAX_BYTES``."""
        N, H, W, C = x.shape
        Ho, Wo, _ = self.output_shape((H, W, C))
        bytes_per_image = Ho * Wo * self.kernel_size**2 * C * x.dtype.itemsize  # one row per output pixel
        step = max(1, IM2COL_MAX_BYTES // bytes_per_image)
        return [slice(start, min(start + step, N)) for start in range(0, N, step)]

    def _columns(self, x):
        """im2col with this layer's geometry (kernel, padding, stride, dilation): (n, H, W, C) -> (n*Ho*Wo, K*K*C)."""
        return im2col(x, self.kernel_size, self.pad, self.stride, self.dilation)

    def _image(self, dcols, x_shape):
        """col2im with this layer's geometry: the columns' gradient (n*Ho*Wo, K*K*C) -> (n, H, W, C)."""
        return col2im(dcols, x_shape, self.kernel_size, self.pad, self.stride, self.dilation)

    def forward(self, x, train=False):
        _check_input(self, x, 4, self.in_channels, "(N, H, W, C)")
        xp = get_array_module(x)
        N = x.shape[0]
        K, C, F = self.kernel_size, self.in_channels, self.out_channels
        Ho, Wo, _ = self.output_shape(x.shape[1:])
        self.cache = x if train else None
        # [part conv] hint: per chunk of the batch, the columns of x (self._columns) times the kernel as a
        # matrix, plus b
        ### BEGIN SOLUTION
        W2 = self.params["W"].reshape(K * K * C, F)        # (KH, KW, C, F) -> (KH*KW*C, F)
        out = xp.empty((N, Ho, Wo, F), dtype=x.dtype)
        for chunk in self._chunks(x):
            cols = self._columns(x[chunk])                  # (n*Ho*Wo, KH*KW*C)
            out_2d = cols @ W2 + self.params["b"]           # (n*Ho*Wo, KH*KW*C) @ (KH*KW*C, F) -> (n*Ho*Wo, F)
            out[chunk] = out_2d.reshape(-1, Ho, Wo, F)      # (n*Ho*Wo, F) -> (n, Ho, Wo, F)
        return out
        ### END SOLUTION

    def backward(self, dout):
        """dL/dx (None when ``input_grad`` is False: the first layer's input is data)."""
        x = self.cache
        xp = get_array_module(dout)
        K, C, F = self.kernel_size, self.in_channels, self.out_channels
        # [part conv] hint: treat the columns of each chunk as a dense layer's input; col2im
        # (self._image) takes the columns' gradient back to the image
        ### BEGIN SOLUTION
        W2 = self.params["W"].reshape(K * K * C, F)        # (KH, KW, C, F) -> (KH*KW*C, F)
        dW2 = xp.zeros_like(W2)
        dx = xp.empty_like(x) if self.input_grad else None
        for chunk in self._chunks(x):
            cols = self._columns(x[chunk])                  # (n*Ho*Wo, KH*KW*C)
            dout_2d = dout[chunk].reshape(-1, F)            # (n, Ho, Wo, F) -> (n*Ho*Wo, F)
            dW2 += cols.T @ dout_2d                         # (KH*KW*C, n*Ho*Wo) @ (n*Ho*Wo, F) -> (KH*KW*C, F)
            if self.input_grad:
                dcols = dout_2d @ W2.T                      # (n*Ho*Wo, F) @ (F, KH*KW*C) -> (n*Ho*Wo, KH*KW*C)
                dx[chunk] = self._image(dcols, x[chunk].shape)
        self.grads = {"W": dW2.reshape(self.params["W"].shape),  # (KH*KW*C, F) -> (KH, KW, C, F)
                      "b": dout.sum(axis=(0, 1, 2))}
        return dx
        ### END SOLUTION


class BatchNorm2D(Layer):
    """Batch normalization of every channel (Ioffe & Szegedy, 2015): out = gamma * xhat + beta.

    xhat = (x - mean) / sqrt(var + eps), with each channel's mean and (biased) variance taken
    over the m = N*H*W values of the batch when training, and the running averages otherwise.
    x: (N, H, W, C) -> out: the same shape; gamma, beta: (C,), starting at 1 and 0.

    Each layer then sees inputs of a steady scale whatever the layers before it learn, so
    a deep stack trains from the first epoch at rates that would make it diverge without.
    Training also updates ``buffers["running_mean"]`` and ``buffers["running_var"]``
    (running <- momentum * running + (1 - momentum) * batch value; the variance unbiased,
    times m / (m - 1)): state, not parameters: no gradient, no weight decay, no optimizer,
    but saved in checkpoints. A frozen layer (``trainable = False``, fine-tuning) always
    uses the running statistics and leaves them alone, as Keras does.

    Backward (the compact form), per channel, sums and means over its m values. With
    s = sqrt(var + eps), x_j reaches xhat_i directly and through the mean and the variance:
    d xhat_i / d x_j = (delta_ij - 1/m) / s - xhat_i * xhat_j / (m s). Summing dL/dxhat_i =
    gamma * dout_i times that over i:
        dx = gamma / s * (dout - mean(dout) - xhat * mean(dout * xhat)),
        dgamma = sum(dout * xhat),   dbeta = sum(dout).
    With running statistics the mean and variance are constants: dx = gamma * dout / s.
    """

    def __init__(self, num_channels, momentum=0.9, eps=1e-5, dtype=np.float32):
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f"BatchNorm2D momentum must be in [0, 1), got {momentum!r}.")
        if not eps > 0:
            raise ValueError(f"BatchNorm2D eps must be positive, got {eps!r}.")
        self.num_channels, self.momentum, self.eps = num_channels, momentum, eps
        self.params = {"gamma": np.ones(num_channels, dtype=dtype), "beta": np.zeros(num_channels, dtype=dtype)}
        self.buffers = {"running_mean": np.zeros(num_channels, dtype=dtype),
                        "running_var": np.ones(num_channels, dtype=dtype)}

    def __repr__(self):
        return f"BatchNorm2D({self.num_channels})"

    def forward(self, x, train=False):
        _check_input(self, x, 4, self.num_channels, "(N, H, W, C)")
        xp = get_array_module(x)
        x2 = x.reshape(-1, self.num_channels)                   # (N, H, W, C) -> (m, C): one column per channel
        batch_stats = train and self.trainable
        # [part batchnorm] hint: with batch statistics (batch_stats) each channel's own mean and biased variance,
        # and the running averages moved towards them (the variance unbiased); else the running statistics.
        # Then normalize, scale and shift; cache what the backward formula in the docstring reads
        ### BEGIN SOLUTION
        if batch_stats:
            m = x2.shape[0]
            mean = x2.mean(axis=0)                              # (C,)
            var = ((x2 - mean) ** 2).mean(axis=0)               # (C,), biased: what normalizes this batch
            self.update_running_statistics(mean, var * (m / max(m - 1, 1)))
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        inv_std = 1 / xp.sqrt(var + self.eps)                   # (C,)
        xhat = (x2 - mean) * inv_std                            # (m, C)
        out = self.params["gamma"] * xhat + self.params["beta"]  # (m, C)
        self.cache = (xhat, inv_std, batch_stats) if train else None
        return out.reshape(x.shape)                             # (m, C) -> (N, H, W, C)
        ### END SOLUTION

    def update_running_statistics(self, mean, var):
        """running <- momentum * running + (1 - momentum) * this batch's value, for the mean and
        the (unbiased) variance."""
        for name, value in (("running_mean", mean), ("running_var", var)):
            running = self.buffers[name]
            running[...] = self.momentum * running + (1 - self.momentum) * value

    def backward(self, dout):
        dout2 = dout.reshape(-1, self.num_channels)             # (N, H, W, C) -> (m, C)
        # [part batchnorm] hint: the docstring's compact formula, column by column; with running statistics
        # the mean and variance are constants
        ### BEGIN SOLUTION
        xhat, inv_std, batch_stats = self.cache
        dbeta = dout2.sum(axis=0)                               # (C,)
        dgamma = (dout2 * xhat).sum(axis=0)                     # (C,)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        scale = self.params["gamma"] * inv_std                  # (C,)
        if not batch_stats:
            return (dout2 * scale).reshape(dout.shape)
        dx = scale * (dout2 - dout2.mean(axis=0) - xhat * (dout2 * xhat).mean(axis=0))  # (m, C)
        return dx.reshape(dout.shape)                           # (m, C) -> (N, H, W, C)
        ### END SOLUTION


class MaxPool2D(Layer):
    """2x2 max-pooling, stride 2: each output is the largest of a 2x2 window.

    x: (N, H, W, C) -> out: (N, H//2, W//2, C). An odd last row or column is
    dropped (floored), as Keras does. Backward routes each gradient to the
    position that held the maximum (the first one, on ties) and zero elsewhere.
    """

    def output_shape(self, input_shape):
        H, W, C = input_shape
        return H // 2, W // 2, C

    def _check(self, x):
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects input of shape (N, H, W, C), got {tuple(x.shape)}.")
        N, H, W, C = x.shape
        if H // 2 == 0 or W // 2 == 0:
            raise ValueError(f"{type(self).__name__} needs at least 2x2 pixels, got {H}x{W}; "
                             "use a larger input or fewer pooling layers.")

    def forward(self, x, train=False):
        self._check(x)
        N, H, W, C = x.shape
        Ho, Wo = H // 2, W // 2
        # [part pool] hint: view the image as 2x2 windows and take each one's maximum; when training
        # remember which position won (the first on ties)
        ### BEGIN SOLUTION
        windows = x[:, :2 * Ho, :2 * Wo, :].reshape(N, Ho, 2, Wo, 2, C)  # (N, 2Ho, 2Wo, C) -> (N, Ho, 2, Wo, 2, C)
        out = windows.max(axis=(2, 4))                                   # (N, Ho, Wo, C)
        if train:
            # which of the 4 window positions (row-major) held the maximum
            flat = windows.transpose(0, 1, 3, 5, 2, 4).reshape(N, Ho, Wo, C, 4)  # (N, Ho, Wo, C, 2*2)
            self.cache = (x.shape, flat.argmax(axis=-1))
        else:
            self.cache = None
        return out
        ### END SOLUTION

    def backward(self, dout):
        # [part pool] hint: each dout goes to the winning position of its window, 0 elsewhere
        # (and 0 for a dropped odd edge)
        ### BEGIN SOLUTION
        x_shape, argmax = self.cache
        xp = get_array_module(dout)
        N, Ho, Wo, C = dout.shape
        winner = argmax[..., None] == xp.arange(4)                 # (N, Ho, Wo, C, 4) one-hot
        dwin = winner * dout[..., None]                            # (N, Ho, Wo, C, 4)
        dwin = dwin.reshape(N, Ho, Wo, C, 2, 2).transpose(0, 1, 4, 2, 5, 3)  # -> (N, Ho, 2, Wo, 2, C)
        dx = xp.zeros(x_shape, dtype=dout.dtype)
        dx[:, :2 * Ho, :2 * Wo, :] = dwin.reshape(N, 2 * Ho, 2 * Wo, C)  # (N, Ho, 2, Wo, 2, C) -> (N, 2Ho, 2Wo, C)
        return dx
        ### END SOLUTION


class GlobalAveragePool2D(Layer):
    """Global average pooling (Lin et al., "Network in Network", 2013): each channel's mean over the image.

    x: (N, H, W, C) -> out: (N, C), out[n, c] = sum over h, w of x[n, h, w, c] / (H*W).
    Each pixel counts 1/(H*W) in its channel's mean, so backward spreads every gradient evenly:
    dx[n, h, w, c] = dout[n, c] / (H*W). No parameters, and any H and W: a head of this layer
    and one Dense layer replaces Flatten and VGG's dense layers (lesson 20).
    """

    def output_shape(self, input_shape):
        H, W, C = input_shape
        return (C,)

    def forward(self, x, train=False):
        if x.ndim != 4:
            raise ValueError(f"GlobalAveragePool2D expects input of shape (N, H, W, C), got {tuple(x.shape)}.")
        # [part global_average] hint: one number per image and channel, the channel's mean over all its pixels;
        # when training keep only what backward needs (it is not x itself)
        ### BEGIN SOLUTION
        self.cache = x.shape if train else None
        return x.mean(axis=(1, 2))                            # (N, H, W, C) -> (N, C)
        ### END SOLUTION

    def backward(self, dout):
        # [part global_average] hint: how much did each pixel count in its channel's mean? (a new array, the input's
        # shape)
        ### BEGIN SOLUTION
        xp = get_array_module(dout)
        N, H, W, C = self.cache
        dx = xp.empty((N, H, W, C), dtype=dout.dtype)
        dx[...] = (dout / (H * W))[:, None, None, :]          # (N, C) -> (N, 1, 1, C), the same at every pixel
        return dx
        ### END SOLUTION


class ImageCentering(Layer):
    """Subtract each image's own mean colour: out[n, h, w, c] = x[n, h, w, c] - mean over h, w of x[n, :, :, c].

    x: (N, H, W, C) -> out: (N, H, W, C). The first layer of the network ``python -m tinyvgg.train``
    builds: it makes the network blind to an image's overall colour (a red background instead of a
    blue one, a brighter photo), so that the first filters start from contrasts, the edges that make
    a shape. The data set's per-channel normalization cannot do this: it takes one mean for all
    images. On the built-in shapes, whose backgrounds are drawn in random colours, the colour is
    most of each pixel's value and says nothing about the class; without this layer a VGG16 spends
    its first hundred steps near chance (benchmarks/README.md, "Why small data sets stalled").

    No parameters and no statistics: the mean is the image's own, so training and inference do the
    same thing (unlike :class:`BatchNorm2D`, whose mean is the batch's). Backward: the map is
    linear, out_i = x_i - (x_1 + ... + x_M) / M over an image's M = H*W pixels of one channel, so
    dL/dx_j = dout_j - (dout_1 + ... + dout_M) / M: every pixel gives up its share of the mean.
    """

    def forward(self, x, train=False):
        if x.ndim != 4:
            raise ValueError(f"ImageCentering expects images of shape (N, H, W, C), got {tuple(x.shape)}.")
        return x - x.mean(axis=(1, 2), keepdims=True)        # (N, H, W, C) - (N, 1, 1, C)

    def backward(self, dout):
        return dout - dout.mean(axis=(1, 2), keepdims=True)  # the same map: it is its own transpose


class Dense(Layer):
    """Fully connected layer: out = x @ W + b.

    x: (N, in) -> out: (N, out); W: (in, out); b: (out,).
    Backward: dx = dout @ W.T, dW = x.T @ dout, db = sum of dout over the batch.
    """

    def __init__(self, in_features, out_features, init="he_normal", rng=None, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rng = np.random.default_rng() if rng is None else rng
        self.params = {
            "W": get_initializer(init)((in_features, out_features), rng).astype(dtype),
            "b": np.zeros(out_features, dtype=dtype),
        }

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features})"

    def output_shape(self, input_shape):
        return (self.out_features,)

    def multiply_adds(self, input_shape):
        return self.in_features * self.out_features

    def forward(self, x, train=False):
        _check_input(self, x, 2, self.in_features, "(N, in_features)")
        # [part dense] hint: lesson 2: each output is a weighted sum of every input plus a bias, the whole batch in one
        # product; keep what backward needs, only when training
        ### BEGIN SOLUTION
        self.cache = x if train else None
        return x @ self.params["W"] + self.params["b"]  # (N, in) @ (in, out) -> (N, out)
        ### END SOLUTION

    def backward(self, dout):
        """dL/dx (None when ``input_grad`` is False: the first layer's input is data)."""
        # [part dense] hint: the three gradients by the chain rule, each a matrix product or a sum over the batch
        ### BEGIN SOLUTION
        x = self.cache
        self.grads = {"W": x.T @ dout,                   # (in, N) @ (N, out) -> (in, out)
                      "b": dout.sum(axis=0)}             # (out,)
        return dout @ self.params["W"].T if self.input_grad else None  # (N, out) @ (out, in) -> (N, in)
        ### END SOLUTION


class ReLU(Layer):
    """out = max(x, 0); the gradient passes where x > 0 and is 0 elsewhere."""

    def forward(self, x, train=False):
        # [part relu] hint: keep the positive part of x; when training, keep what backward needs (and no more)
        ### BEGIN SOLUTION
        xp = get_array_module(x)
        out = xp.maximum(x, 0)
        self.cache = out if train else None  # out > 0 exactly where x > 0
        return out
        ### END SOLUTION

    def backward(self, dout):
        # [part relu] hint: where did the forward pass let x through?
        ### BEGIN SOLUTION
        return dout * (self.cache > 0)
        ### END SOLUTION


class LeakyReLU(Layer):
    """out = x where x > 0, alpha * x elsewhere (Maas et al., 2013); the gradient is 1 or alpha.

    x: any shape -> out: the same shape. A ReLU whose negative side keeps a small slope, so a unit
    that is negative for every input still passes ``alpha`` times its gradient back and can recover
    (lesson 19). ``alpha=0`` is :class:`ReLU`.
    """

    def __init__(self, alpha=0.01):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"LeakyReLU alpha must be in [0, 1), got {alpha!r}.")
        self.alpha = float(alpha)  # a Python float: alpha * x keeps x's dtype (a NumPy float64 would not)

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha})"

    def forward(self, x, train=False):
        # [part leaky] hint: ReLU's forward with a slope alpha on the negative side; when training, keep
        # only which side each x was on
        ### BEGIN SOLUTION
        xp = get_array_module(x)
        positive = x > 0                                 # bool, the shape of x: 1 byte per value
        self.cache = positive if train else None
        return xp.where(positive, x, self.alpha * x)     # a Python float times x keeps x's dtype
        ### END SOLUTION

    def backward(self, dout):
        # [part leaky] hint: the slope on each side of the kink, times dout (a new array: dout stays as it was)
        ### BEGIN SOLUTION
        xp = get_array_module(dout)
        return xp.where(self.cache, dout, self.alpha * dout)
        ### END SOLUTION


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate``
    and scale the survivors by 1 / (1 - rate), so evaluation is the identity.

    The mask is drawn from a host-side ``numpy.random.Generator`` (seeded the same
    way on both backends). ``fixed_mask``, when set, is used instead of a fresh draw
    (:meth:`hold_randomness` sets it to the last mask, for gradient checks).
    """

    def __init__(self, rate=0.5, rng=None):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate!r}.")
        self.rate = rate
        self.rng = np.random.default_rng() if rng is None else rng
        self.fixed_mask = None

    def __repr__(self):
        return f"Dropout({self.rate})"

    def hold_randomness(self, hold=True):
        self.fixed_mask = self.cache if hold else None

    def forward(self, x, train=False):
        # [part dropout] hint: lesson 4's inverted dropout; draw the mask with self.rng.random (on the host), or use
        # fixed_mask when it is set; what must evaluation do, given how training scaled?
        ### BEGIN SOLUTION
        if not train or self.rate == 0.0:
            self.cache = None
            return x
        xp = get_array_module(x)
        if self.fixed_mask is not None:
            mask = self.fixed_mask
        else:
            keep = self.rng.random(x.shape, dtype=np.float32) >= self.rate  # drawn on the host
            mask = xp.asarray(keep).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.rate))
        self.cache = mask
        return x * mask
        ### END SOLUTION

    def backward(self, dout):
        # [part dropout] hint: the same mask, applied to the gradient
        ### BEGIN SOLUTION
        if self.cache is None:  # rate 0: identity
            return dout
        return dout * self.cache
        ### END SOLUTION


class Flatten(Layer):
    """(N, H, W, C) -> (N, H*W*C), in NHWC order; backward reshapes back."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, train=False):
        self.cache = x.shape if train else None
        return x.reshape(x.shape[0], -1)  # (N, H, W, C) -> (N, H*W*C)

    def backward(self, dout):
        return dout.reshape(self.cache)  # (N, H*W*C) -> (N, H, W, C)


def softmax(scores, axis=-1):
    """Class probabilities from scores along ``axis``: exp(z) / sum(exp(z)), after subtracting the
    maximum so that exp never overflows.

    >>> softmax(np.array([0.0, np.log(3.0)])).round(6).tolist()
    [0.25, 0.75]
    """
    xp = get_array_module(scores)
    e = xp.exp(scores - scores.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Loss(Layer):
    """Base class of losses: a layer whose forward pass also takes the labels and returns a scalar.

        loss = loss_fn.forward(logits, labels)    # caches what backward needs
        dlogits = loss_fn.backward()              # dL/dlogits (times ``dout``, default 1)
    """

    def forward(self, logits, labels):
        raise NotImplementedError

    def backward(self, dout=1.0):
        raise NotImplementedError


class SoftmaxCrossEntropy(Loss):
    """Mean cross-entropy of softmax(logits) against integer labels.

    loss = mean_n [ logsumexp(z_n) - z_n[y_n] ], computed after subtracting each
    row's maximum so that exp never overflows. Its gradient is simply
    d loss / d z = (softmax(z) - onehot(y)) / N.

    logits: (N, K) float; labels: (N,) integers in [0, K). ``forward`` returns a
    0-d array (no host round trip on a GPU); ``backward()`` returns dL/dlogits.
    """

    def forward(self, logits, labels):
        xp = get_array_module(logits)
        if logits.ndim != 2:
            raise ValueError(f"logits must have shape (N, num_classes), got {tuple(logits.shape)}.")
        N, K = logits.shape
        labels = xp.asarray(labels)
        if labels.shape != (N,) or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be {N} integer class indices, got shape {tuple(labels.shape)} "
                             f"and dtype {labels.dtype}.")
        if xp is np and N and (labels.min() < 0 or labels.max() >= K):  # on a GPU this check would stall
            raise ValueError(f"labels must lie in [0, {K}), got values from {labels.min()} to {labels.max()}.")
        # [part softmax] hint: lesson 3's log-sum-exp trick, row by row; the loss is a mean over the batch;
        # cache (probs, labels)
        ### BEGIN SOLUTION
        shifted = logits - logits.max(axis=1, keepdims=True)                  # (N, K), max is 0
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # (N, K)
        self.cache = (xp.exp(log_probs), labels)
        return -log_probs[xp.arange(N), labels].mean()
        ### END SOLUTION

    def backward(self, dout=1.0):
        # [part softmax] hint: lesson 3's derivation, remembering the loss is a mean over N; then the chain rule with dout
        ### BEGIN SOLUTION
        probs, labels = self.cache
        xp = get_array_module(probs)
        N = probs.shape[0]
        dlogits = probs.copy()
        dlogits[xp.arange(N), labels] -= 1
        dlogits *= probs.dtype.type(dout / N)
        return dlogits
        ### END SOLUTION

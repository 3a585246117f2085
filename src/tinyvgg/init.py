"""Weight initializers: the starting point that lets a deep network train at all.

A layer's output variance is its input variance times ``fan_in * Var(W)``. Keep
that product near 1 and signals neither explode nor vanish through 16 layers:

- He (Kaiming) for ReLU stacks: ``Var(W) = 2 / fan_in`` (ReLU zeroes half the signal).
- Glorot (Xavier) for linear/tanh layers: ``Var(W) = 2 / (fan_in + fan_out)``.

For a dense weight ``(in, out)``, fan_in = in and fan_out = out; for an HWIO conv
weight ``(KH, KW, C_in, C_out)``, fan_in = KH*KW*C_in and fan_out = KH*KW*C_out.

Every initializer draws from a host-side ``numpy.random.Generator`` and returns a
float64 NumPy array, so the same seed gives the same weights on NumPy and CuPy
(the layer then casts and moves them). The normal variants are plain (not
truncated) normals, as in the He and Glorot papers; Keras truncates at 2 sigma.

>>> import numpy as np
>>> W = he_normal((3, 3, 64, 128), np.random.default_rng(0))
>>> round(float(W.std() ** 2 * 3 * 3 * 64), 1)   # Var(W) * fan_in ~ 2
2.0
"""
import numpy as np


def compute_fans(shape):
    """(fan_in, fan_out) of a dense ``(in, out)`` or HWIO conv weight shape."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        KH, KW, C_in, C_out = shape
        return KH * KW * C_in, KH * KW * C_out
    raise ValueError(f"expected a dense (in, out) or conv (KH, KW, C_in, C_out) shape, got {shape}.")


def he_normal(shape, rng):
    """N(0, 2 / fan_in): He et al. 2015, for layers followed by ReLU."""
    fan_in, _ = compute_fans(shape)
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)


def he_uniform(shape, rng):
    """U(-a, a) with a = sqrt(6 / fan_in): the same variance as he_normal."""
    fan_in, _ = compute_fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape)


def he_normal_zero_mean(shape, rng):
    """He's normal with each filter's window summed to zero: a first convolution blind to flat colour.

    Every window ``W[:, :, i, o]`` (one input channel into one output channel) has its own mean
    taken off, so a patch of a single colour gives 0 and the filter answers only to changes inside
    its window: edges, lines, corners. Taking off the mean of K*K independent weights leaves each
    one (K*K - 1) / (K*K) of its variance; the factor sqrt(K*K / (K*K - 1)) restores He's 2 / fan_in.
    What ``python -m tinyvgg.train`` draws for a network's first convolution, with
    :class:`~tinyvgg.layers.ImageCentering` before it: the first steps then learn shapes instead of
    first unlearning the background's colour. Training is free to learn colour again.

    >>> W = he_normal_zero_mean((3, 3, 3, 64), np.random.default_rng(0))
    >>> bool(abs(W.sum(axis=(0, 1))).max() < 1e-12)   # every window sums to zero
    True
    """
    if len(shape) != 4 or shape[0] * shape[1] < 2:
        raise ValueError(f"he_normal_zero_mean is for conv weights (KH, KW, C_in, C_out) with a window of at "
                         f"least two taps, got {shape}.")
    window = shape[0] * shape[1]
    W = he_normal(shape, rng)
    W -= W.mean(axis=(0, 1), keepdims=True)   # (KH, KW, C_in, C_out) - (1, 1, C_in, C_out)
    return W * np.sqrt(window / (window - 1))


def glorot_normal(shape, rng):
    """N(0, 2 / (fan_in + fan_out)): Glorot & Bengio 2010."""
    fan_in, fan_out = compute_fans(shape)
    return rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))


def glorot_uniform(shape, rng):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)): Keras' default for Dense and Conv2D."""
    fan_in, fan_out = compute_fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def small_normal(shape, rng):
    """N(0, 0.01^2) whatever the fans: torchvision's start for VGG's dense layers.

    Not variance-preserving on purpose: through three dense layers the signal shrinks,
    so the first logits are near zero and the first loss is ln(classes), however wide
    the head and whatever dropout does to its inputs. He's variance keeps the scale
    instead, and a 4096-unit head under dropout 0.5 then starts with logits of
    standard deviation 3.5 that every SGD step throws further (benchmarks/README.md).
    """
    return rng.normal(0.0, 0.01, shape)


def zeros(shape, rng=None):
    """All zeros: the usual start for biases, and a bad one for the weights of a hidden layer (its units get
    the same gradient and stay the same). The last layer is the exception: each class's row of gradients
    differs (it is pulled towards that class's images), and zero logits start every class equally likely."""
    return np.zeros(shape)


INITIALIZERS = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "he_normal_zero_mean": he_normal_zero_mean,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "small_normal": small_normal,
    "zeros": zeros,
}


def get_initializer(init):
    """Look up an initializer by name; a callable ``init(shape, rng)`` is returned as it is."""
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except KeyError:
        raise ValueError(f"unknown initializer {init!r}: choose one of {', '.join(INITIALIZERS)}.") from None

"""Optimizers and learning-rate schedules.

An optimizer owns the model's parameter arrays (by name) and updates them in
place from the gradients of the last backward pass::

    opt = SGD(model.named_params(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    ... model.backward(dout) ...
    opt.step(model.named_grads())

Its state (momentum buffers, RMSProp's mean squares, Adam moments) is keyed by the
same names, so it can be saved with a checkpoint and restored into a freshly built
model. Lesson 17 derives the update rules and compares them.

Beside the optimizers: the learning-rate schedules (:class:`LinearWarmup` at the
start of training, :class:`ReduceLROnPlateau` and :class:`StepLR` after each
epoch) and :func:`clip_grad_norm`, which bounds the size of one update.
"""
import numpy as np

from .backend import backend_of, get_array_module, to_device, to_host


class Optimizer:
    """Shared bookkeeping: parameters by name, learning rate, L2 weight decay.

    weight_decay adds ``weight_decay * w`` to each weight's gradient: the
    gradient of the L2 penalty ``weight_decay / 2 * ||w||^2``. Biases (1-D
    parameters) are not decayed unless ``decay_biases`` is set: shrinking a
    bias towards 0 does not make the function any simpler.
    """

    name = None  # the name checkpoints record: the fast and the reference update resume each other
    slots = ()  # names of the per-parameter state buffers

    def __init__(self, params, lr, weight_decay=0.0, decay_biases=False):
        if lr <= 0:
            raise ValueError(f"the learning rate must be positive, got {lr}.")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be zero or positive, got {weight_decay}.")
        self.params = dict(params)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.decay_biases = decay_biases
        self.iterations = 0
        self.state = {slot: {name: get_array_module(p).zeros_like(p) for name, p in self.params.items()}
                      for slot in self.slots}

    def _decay(self, name):
        p = self.params[name]
        return self.weight_decay if (p.ndim > 1 or self.decay_biases) else 0.0

    def step(self, grads):
        """Update every parameter in place from ``grads`` (keyed like the parameters; left as they are)."""
        self.iterations += 1
        for name, p in self.params.items():
            g = grads[name]
            if g.shape != p.shape:
                raise ValueError(f"gradient {name} has shape {g.shape}, its parameter {p.shape}.")
            self._step_parameter(p, g, self._decay(name), [self.state[slot][name] for slot in self.slots])

    def _step_parameter(self, p, g, decay, state):
        """One parameter's update: the L2 term, then the optimizer's own formula."""
        if decay:
            g = g + decay * p  # the gradient of loss + decay/2 ||w||^2
        self._update(p, g, state)

    def _update(self, p, g, state):
        """Update the parameter ``p`` in place from its gradient ``g`` and its state arrays (updated in
        place too)."""
        raise NotImplementedError

    def state_dict(self):
        """Host copies of the state, ``{"velocity/block1_conv1.W": array, ...}``, plus scalars."""
        arrays = {f"{slot}/{name}": np.array(to_host(v))  # a copy: later steps must not change it
                  for slot, buffers in self.state.items() for name, v in buffers.items()}
        return arrays, {"lr": self.lr, "iterations": self.iterations}

    def load_state_dict(self, arrays, scalars):
        """Restore what :meth:`state_dict` returned; names and shapes must match."""
        for slot, buffers in self.state.items():
            for name, buf in buffers.items():
                key = f"{slot}/{name}"
                if key not in arrays or tuple(arrays[key].shape) != tuple(buf.shape):
                    raise ValueError(f"the saved optimizer state has no matching {key}; "
                                     "was it saved for another model or optimizer?")
                buffers[name] = to_device(np.array(arrays[key], dtype=buf.dtype), backend_of(buf))  # own copy
        self.lr = float(scalars["lr"])
        self.iterations = int(scalars["iterations"])


class SGD(Optimizer):
    """Mini-batch gradient descent with momentum, as in the VGG paper (Caffe's form).

        v <- momentum * v - lr * g          w <- w + v
        nesterov:  w <- w + momentum * v - lr * g   (look ahead along the new velocity)

    momentum=0 is plain SGD. Scaling ``lr`` later (a schedule) changes the step
    size from then on and leaves the velocity as it is.
    """

    name = "SGD"  # saved in checkpoints: FastSGD saves and resumes as SGD
    slots = ("velocity",)

    def __init__(self, params, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0, decay_biases=False):
        super().__init__(params, lr, weight_decay, decay_biases)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0.")
        self.momentum, self.nesterov = float(momentum), nesterov

    def _update(self, p, g, state):
        # [part sgd] hint: the two lines of the docstring, with the velocity and p changed in place
        ### BEGIN SOLUTION
        (v,) = state
        v *= self.momentum
        v -= self.lr * g                  # v <- momentum * v - lr * g
        if self.nesterov:
            p += self.momentum * v - self.lr * g
        else:
            p += v
        ### END SOLUTION


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): per-parameter step sizes from running moments.

        m <- b1 m + (1 - b1) g         s <- b2 s + (1 - b2) g^2
        w <- w - lr * m_hat / (sqrt(s_hat) + eps),  m_hat = m / (1 - b1^t), s_hat = s / (1 - b2^t)

    weight_decay here is the classic L2 term added to g (not AdamW's decoupled decay).
    """

    name = "Adam"
    slots = ("m", "s")

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.0, decay_biases=False):
        super().__init__(params, lr, weight_decay, decay_biases)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _update(self, p, g, state):
        # [part adam] hint: both moments in place, then the step with both bias corrections (t = self.iterations)
        ### BEGIN SOLUTION
        m, s = state
        xp = get_array_module(p)
        m *= self.beta1
        m += (1 - self.beta1) * g         # m <- b1 m + (1 - b1) g
        s *= self.beta2
        s += (1 - self.beta2) * g * g     # s <- b2 s + (1 - b2) g^2
        t = self.iterations
        step = self.lr * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)  # bias corrections folded in
        p -= step * m / (xp.sqrt(s) + self.eps)
        ### END SOLUTION


class RMSProp(Optimizer):
    """RMSProp (Hinton, 2012, "Neural networks for machine learning", lecture 6e): each coordinate's step
    divided by the root of a running mean of its squared gradients.

        s <- rho s + (1 - rho) g^2          w <- w - lr * g / (sqrt(s) + eps)

    A coordinate whose gradients are large takes smaller steps, one whose gradients are small takes larger
    ones: the step no longer depends on the gradient's scale. No bias correction (as in Keras and PyTorch):
    ``s`` starts at 0. weight_decay is the L2 term added to g, so it is divided by ``sqrt(s)`` too.
    """

    name = "RMSProp"
    slots = ("s",)

    def __init__(self, params, lr=0.001, rho=0.9, eps=1e-7, weight_decay=0.0, decay_biases=False):
        super().__init__(params, lr, weight_decay, decay_biases)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho}.")
        self.rho, self.eps = float(rho), float(eps)

    def _update(self, p, g, state):
        # [part rmsprop] hint: the running mean of g^2 in place, then a step of lr * g divided by its root
        ### BEGIN SOLUTION
        (s,) = state
        xp = get_array_module(p)
        s *= self.rho
        s += (1 - self.rho) * g * g       # s <- rho s + (1 - rho) g^2
        p -= self.lr * g / (xp.sqrt(s) + self.eps)
        ### END SOLUTION


class BlockedUpdates:
    """The fast update on the CPU: each parameter in flat blocks of ``BLOCK`` elements.

    Mixed in before an optimizer (:class:`FastSGD`, :class:`FastAdam`): the update's formulas
    then make block-sized temporaries, and the five blocks one update touches stay in a core's
    cache (VGG16's fc1 alone is 411 MB; 2**16 float32 elements are 256 KB). On a GPU whole
    tensors are faster (every block costs kernel launches), so CuPy arrays are updated whole.
    Same numbers as the optimizer it speeds up: every formula is elementwise.
    """

    BLOCK = 2**16

    def _step_parameter(self, p, g, decay, state):
        block = self.BLOCK if get_array_module(p) is np else max(p.size, 1)
        flat_p, flat_g = p.reshape(-1), g.reshape(-1)  # views: p, g and the state are contiguous
        flat_state = [s.reshape(-1) for s in state]
        for start in range(0, p.size, block):
            part = slice(start, start + block)
            super()._step_parameter(flat_p[part], flat_g[part], decay, [s[part] for s in flat_state])


class FastSGD(BlockedUpdates, SGD):
    """:class:`SGD` updated block by block on the CPU (:class:`BlockedUpdates`)."""


class FastAdam(BlockedUpdates, Adam):
    """:class:`Adam` updated block by block on the CPU (:class:`BlockedUpdates`)."""


class FastRMSProp(BlockedUpdates, RMSProp):
    """:class:`RMSProp` updated block by block on the CPU (:class:`BlockedUpdates`)."""


class LinearWarmup:
    """Ramp the learning rate linearly from ``start_factor * lr`` up to ``lr`` over the first ``steps`` updates.

        lr_t = lr * (start_factor + (1 - start_factor) * t / steps)   for update t = 0, 1, ..., steps - 1

    then ``lr`` itself, left to the other schedules. Goyal et al. (2017), "Accurate, Large
    Minibatch SGD": at the start the weights are random and the gradients large and erratic,
    and one full-size step can throw the network where its ReLUs never fire again (the loss
    sits at chance for good). A few hundred small steps let it settle first. Call
    :meth:`step` before every ``optimizer.step``; it reads the optimizer's own update count,
    so a resumed run continues the ramp where it stopped.
    """

    def __init__(self, optimizer, steps, start_factor=0.1):
        if steps < 0:
            raise ValueError(f"warm-up steps must be zero or positive, got {steps}.")
        if not 0 < start_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor}.")
        self.optimizer, self.steps, self.start_factor = optimizer, int(steps), float(start_factor)
        self.target_lr = optimizer.lr

    @property
    def active(self):
        """True while the ramp is still running (the other schedules wait for it)."""
        return self.optimizer.iterations < self.steps

    def lr_at(self, t):
        """The learning rate of update ``t`` (counted from 0)."""
        if t >= self.steps:
            return self.target_lr
        return self.target_lr * (self.start_factor + (1 - self.start_factor) * t / self.steps)

    def step(self):
        """Set the learning rate of the coming update (and leave it alone once the ramp is over)."""
        t = self.optimizer.iterations
        if t <= self.steps:
            self.optimizer.lr = self.lr_at(t)

    def state_dict(self):
        return {"steps": self.steps, "start_factor": self.start_factor, "target_lr": self.target_lr}

    def load_state_dict(self, state):
        self.steps, self.start_factor = int(state["steps"]), float(state["start_factor"])
        self.target_lr = float(state["target_lr"])


def clip_grad_norm(grads, max_norm):
    """Scale every gradient in place so that their global norm is at most ``max_norm``.

        norm = sqrt(sum over all arrays of sum(g^2));   g <- g * min(1, max_norm / norm)

    The direction of the update is kept, only its length is bounded: one bad batch can then
    not throw the weights far (Pascanu et al., 2013). ``grads`` is a dict of arrays (NumPy or
    CuPy). Returns the norm before clipping as a 0-d array on the gradients' device: reading it
    on a GPU would make the CPU wait, so the scale is applied without looking at it.

    >>> g = {"w": np.array([3.0, 4.0])}
    >>> float(clip_grad_norm(g, 1.0)), g["w"].round(6).tolist()
    (5.0, [0.6, 0.8])
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}.")
    arrays = list(grads.values())
    if not arrays:
        return np.float64(0.0)
    xp = get_array_module(arrays[0])
    squares = [xp.vdot(g.reshape(-1), g.reshape(-1)) for g in arrays]  # a dot product: one BLAS pass each
    norm = xp.sqrt(xp.stack(squares).astype(np.float64).sum())
    if xp is np and norm <= max_norm:
        return norm  # on the CPU, looking is free: skip a pass over every gradient
    scale = xp.minimum(1.0, max_norm / xp.maximum(norm, 1e-30)).astype(arrays[0].dtype)  # no 0 / 0
    for g in arrays:
        g *= scale
    return norm


class ReduceLROnPlateau:
    """Divide the learning rate by 10 (``factor``) when a metric stops improving.

    The VGG paper's schedule: "decreased by a factor of 10 when the validation
    set accuracy stopped improving". After ``patience`` epochs without an
    improvement larger than ``min_delta``, lr <- max(lr * factor, min_lr).
    mode="max" for accuracy, "min" for a loss. ``threshold`` (mode "max"): epochs whose metric has
    not passed it count for nothing, neither as a best nor against the rate: a network still at
    chance level (accuracy near 1 / classes) has not reached the plateau the paper means, and a
    smaller rate would only keep it there longer.
    """

    def __init__(self, optimizer, factor=0.1, patience=3, mode="max", min_delta=1e-4, min_lr=1e-6, threshold=None):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}.")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.optimizer, self.factor, self.patience = optimizer, factor, patience
        self.mode, self.min_delta, self.min_lr, self.threshold = mode, min_delta, min_lr, threshold
        self.best, self.bad_epochs = None, 0

    def _improved(self, value):
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta

    def step(self, value):
        """Record this epoch's metric; returns True when the learning rate was reduced."""
        if self.threshold is not None and self.mode == "max" and value <= self.threshold:
            return False                                   # still at chance: not a plateau
        if self._improved(value):
            self.best, self.bad_epochs = value, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience and self.optimizer.lr > self.min_lr:
            self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be at least 1 epoch, got {step_size}.")
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.epochs = 0

    def step(self, value=None):
        """Count one finished epoch; returns True when the learning rate was reduced."""
        self.epochs += 1
        if self.epochs % self.step_size == 0:
            self.optimizer.lr *= self.gamma
            return True
        return False

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        self.epochs = state["epochs"]

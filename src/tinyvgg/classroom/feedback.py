"""Feedback that helps: how a wrong answer differs from the right one, in a sentence.

"dx is off: relative error 7.1e-01" says that something is wrong; the student wants to
know what. :func:`diagnose` looks at the answer and the reference (both computed, in the
grader's own process, on the same inputs) for the mistakes students make most: a missing
or extra factor (``/ N`` forgotten, a wrong sign), a mask not applied (ReLU's backward
passing ``dout`` where ``x <= 0``), a transpose. Otherwise it says where the two first
differ. It never changes a score.
"""
import numpy as np


def _is_int(value, tol=1e-6):
    return abs(value - round(value)) < tol * max(1.0, abs(value))


def _factor(got, want):
    """The scale s with got == s * want (to 1e-9 relative), or None."""
    ww = float(np.vdot(want, want))
    if ww == 0:
        return None
    s = float(np.vdot(got, want)) / ww
    rest = np.linalg.norm(got - s * want)
    return s if rest <= 1e-9 * (np.linalg.norm(got) + np.linalg.norm(want)) else None


def _scale_sentence(name, s, inputs):
    """How ``got = s * want`` is off, in words. Total: any finite or infinite ``s`` gives a sentence (an answer
    scaled by 1e-320 makes 1 / s infinite, which no integer can hold)."""
    batch = next((v.shape[0] for k, v in inputs.items() if k in ("x", "logits") and v.ndim > 0), None)
    if s == 0:
        return f"{name} is all zeros"
    if abs(s) < 1e-12:
        return f"{name} is nearly all zeros ({s:.3g} times the right answer)"
    if not np.isfinite(s) or abs(s) > 1e12:
        return f"{name} is far too large ({s:.3g} times the right answer)"
    if _is_int(-s) and round(-s) == 1:
        return f"{name} has the wrong sign (it is minus the right answer)"
    for k, too in ((s, "large: a missing / {k}"), (1 / s, "small: an extra / {k}")):
        if 1.5 < k < 1e6 and _is_int(k):
            k = round(k)
            note = " (N, the batch size)" if k == batch else ""
            return f"{name} is {k} times too {too.format(k=k)}{note}"
    return f"{name} is off by a factor of {s:.4g}"


def _pool_ties(name, got, inputs):
    """For a 2x2 max-pool backward on inputs with ties: a sentence if ``got`` sends each window's gradient to
    every tied maximum, or to the last one, instead of the first (the specification), else None."""
    x, dout = inputs.get("x"), inputs.get("dout")
    if x is None or dout is None or x.ndim != 4 or dout.ndim != 4 or got.shape != x.shape:
        return None
    N, H, W, C = x.shape
    if dout.shape != (N, H // 2, W // 2, C):
        return None
    windows = x[:, :H // 2 * 2, :W // 2 * 2].reshape(N, H // 2, 2, W // 2, 2, C)      # (N, h, 2, w, 2, C)
    is_max = windows == windows.max(axis=(2, 4), keepdims=True)
    if not (is_max.sum(axis=(2, 4)) > 1).any():
        return None                                                                    # no ties: nothing to name
    spread = dout[:, :, None, :, None, :]                                              # (N, h, 1, w, 1, C)
    every = np.zeros_like(x)
    every[:, :H // 2 * 2, :W // 2 * 2] = (is_max * spread).reshape(N, H // 2 * 2, W // 2 * 2, C)
    flat = is_max.transpose(0, 1, 3, 5, 2, 4).reshape(N, H // 2, W // 2, C, 4)        # each window in row order
    last = np.eye(4, dtype=bool)[3 - np.argmax(flat[..., ::-1], axis=-1)]              # one-hot: its last maximum
    last_dx = np.zeros_like(x)
    last_dx[:, :H // 2 * 2, :W // 2 * 2] = (last.reshape(N, H // 2, W // 2, C, 2, 2).transpose(0, 1, 4, 2, 5, 3)
                                            * spread).reshape(N, H // 2 * 2, W // 2 * 2, C)
    ties = int((is_max.sum(axis=(2, 4)) > 1).sum())
    if np.allclose(got, every):
        return (f"{name} sends each window's gradient to every tied maximum ({ties} windows here have ties); "
                "it must go to the first maximum of the window only, in row-major order")
    if np.allclose(got, last_dx):
        return (f"{name} sends each window's gradient to the last of its tied maxima ({ties} windows here have "
                "ties); it must go to the first, in row-major order")
    return None


def diagnose(name, got, want, inputs):
    """One sentence on how ``got`` differs from ``want`` (same shape, finite), or None if they agree."""
    if got.ndim == 2 and got.shape[::-1] == want.shape and np.allclose(got.T, want, rtol=1e-6, atol=1e-12):
        return f"{name} is the transpose of the right answer"
    if got.shape != want.shape:
        return None
    tied = _pool_ties(name, got, inputs)
    if tied:
        return tied
    s = _factor(got, want)
    if s is not None and not np.isclose(s, 1.0, rtol=1e-9):
        return _scale_sentence(name, s, inputs)
    wrong = ~np.isclose(got, want, rtol=1e-6, atol=1e-9 * (np.abs(want).max() if want.size else 1.0))
    if not wrong.any():
        return None
    x, dout = inputs.get("x"), inputs.get("dout")
    if x is not None and x.shape == got.shape:
        for where, mask in (("x <= 0", x <= 0), ("x > 0", x > 0)):
            if mask[wrong].all() and not mask.all():  # a mask that holds everywhere says nothing
                if dout is not None and dout.shape == got.shape and np.allclose(got[wrong], dout[wrong]):
                    return f"{name} is dout unmasked where {where} (it must be 0 there)"
                return f"{name} differs only where {where} ({int(wrong.sum())} of {wrong.size} entries)"
    first = tuple(int(i) for i in np.argwhere(wrong)[0])
    return (f"{name} differs at {int(wrong.sum())} of {wrong.size} entries; the first at index {first}: "
            f"{got[first]:.6g} instead of {want[first]:.6g}")

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
    batch = next((v.shape[0] for k, v in inputs.items() if k in ("x", "logits") and v.ndim > 0), None)
    if _is_int(-s) and round(-s) == 1:
        return f"{name} has the wrong sign (it is minus the right answer)"
    for k, too in ((s, "large: a missing / {k}"), (1 / s if s else 0, "small: an extra / {k}")):
        if k > 1.5 and _is_int(k):
            k = round(k)
            note = " (N, the batch size)" if k == batch else ""
            return f"{name} is {k} times too {too.format(k=k)}{note}"
    return f"{name} is off by a factor of {s:.4g}"


def diagnose(name, got, want, inputs):
    """One sentence on how ``got`` differs from ``want`` (same shape, finite), or None if they agree."""
    if got.ndim == 2 and got.shape[::-1] == want.shape and np.allclose(got.T, want, rtol=1e-6, atol=1e-12):
        return f"{name} is the transpose of the right answer"
    if got.shape != want.shape:
        return None
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

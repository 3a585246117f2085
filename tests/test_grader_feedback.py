"""The grader's feedback: where a check fails, the report says what differs."""
import numpy as np
import pytest
from test_assignments import SANDBOX, submission

from tinyvgg import assignments
from tinyvgg.classroom.feedback import diagnose

rng = np.random.default_rng(0)
X, DOUT = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
RIGHT = np.where(X > 0, DOUT, 0.0)


@pytest.mark.parametrize("got, sentence", [
    (RIGHT * 4, "dx is 4 times too large: a missing / 4 (N, the batch size)"),
    (RIGHT / 3, "dx is 3 times too small: an extra / 3"),
    (-RIGHT, "dx has the wrong sign"),
    (RIGHT * 1.7, "dx is off by a factor of 1.7"),
    (DOUT, "dx is dout unmasked where x <= 0 (it must be 0 there)"),
    (RIGHT.T, "dx is the transpose of the right answer"),
])
def test_a_wrong_answer_is_described(got, sentence):
    assert sentence in diagnose("dx", got, RIGHT, {"x": X, "dout": DOUT})


def test_other_mistakes_say_where_they_first_differ():
    got = RIGHT.copy()
    got[1, 2] += 1.0
    x_all_positive = np.abs(X) + 1
    text = diagnose("dx", got, RIGHT, {"x": x_all_positive, "dout": DOUT})
    assert text.startswith("dx differs at 1 of 24 entries; the first at index (1, 2)")
    assert diagnose("dx", RIGHT.copy(), RIGHT, {"x": X}) is None


@SANDBOX
def test_the_report_says_what_differs(tmp_path):
    sub = submission(tmp_path, ("layers.py", "return dout * (self.cache > 0)", "return dout.copy()"))
    report = assignments.grade(str(sub), parts=["relu"], timeout=60)
    reasons = report["parts"]["relu"]["reasons"]
    assert len(reasons) == 1 and "dx is dout unmasked where x <= 0" in reasons[0], reasons

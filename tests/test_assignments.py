"""The student version and the grader, end to end."""
import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from tinyvgg import assignments

REPO = pathlib.Path(assignments.REPO_DIR)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "hand-out"
    assert assignments.make(str(out), list(assignments.PARTS)) == 10
    return out


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(folder).rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def copy_of(student, tmp_path, edit=None):
    """A copy of the reference package (a perfect submission), optionally edited."""
    sub = tmp_path / "submission"
    (sub / "tinyvgg").mkdir(parents=True)
    for path in (REPO / "tinyvgg").glob("*.py"):
        (sub / "tinyvgg" / path.name).write_text(path.read_text())
    if edit:
        name, old, new = edit
        text = (sub / "tinyvgg" / name).read_text()
        assert old in text, old
        (sub / "tinyvgg" / name).write_text(text.replace(old, new, 1))
    return sub


def test_the_reference_gets_full_marks():
    report = assignments.grade(str(REPO), timeout=60)
    assert report["total"] == report["max"] == 100, report


def test_the_untouched_student_version_gets_zero_with_a_reason_per_part(student):
    before = tree_digest(student)
    report = assignments.grade(str(student), timeout=60)
    assert report["total"] == 0
    for part, result in report["parts"].items():
        assert result["points"] == 0 and result["reasons"], part
        assert all("not implemented yet" in reason for reason in result["reasons"]), result["reasons"]
    assert tree_digest(student) == before  # the grader never writes into a submission


def test_the_student_version_imports_and_keeps_the_rest_intact(student):
    text = (student / "tinyvgg" / "layers.py").read_text()
    assert "### BEGIN SOLUTION" not in text and 'raise NotImplementedError("part conv")' in text
    assert "[part dense] hint: out = x @ W + b" in text
    assert "ENABLED = False" in (student / "tinyvgg" / "fastconv.py").read_text()
    code = "import tinyvgg.models as m; print(m.vgg16(init='zeros').num_params())"
    result = subprocess.run([sys.executable, "-c", code], cwd=student, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(student)))
    assert result.stdout.strip() == "138357544", result.stderr
    notebook = (student / "lessons" / "02_dense_layer.ipynb").read_text()
    assert "NotImplementedError" in notebook and 'self.grads = {\\"W\\": x.T @ dout' not in notebook
    assert 'self.grads = {\\"W\\": x.T @ dout' in (REPO / "lessons" / "02_dense_layer.ipynb").read_text()
    assert (student / "tests" / "test_assignment.py").exists() and (student / "README.md").exists()


def test_only_the_chosen_parts_are_removed(tmp_path):
    assignments.make(str(tmp_path / "relu-only"), ["relu"])
    report = assignments.grade(str(tmp_path / "relu-only"), timeout=60)
    assert report["parts"]["relu"]["points"] == 0
    assert report["total"] == 100 - assignments.PARTS["relu"]


def test_one_wrong_backward_loses_exactly_that_check(tmp_path):
    sub = copy_of(None, tmp_path, ("layers.py", '"b": dout.sum(axis=0)}', '"b": 2 * dout.sum(axis=0)}'))
    report = assignments.grade(str(sub), timeout=60)
    dense = report["parts"]["dense"]
    assert dense["points"] == 4 and len(dense["reasons"]) == 1 and "Dense backward" in dense["reasons"][0]
    assert "db" in dense["reasons"][0]
    assert report["total"] == 100 - 6


def test_an_endless_loop_is_stopped_and_the_other_parts_are_graded(tmp_path):
    sub = copy_of(None, tmp_path, ("layers.py", "out = xp.maximum(x, 0, out=x if self.inplace else None)",
                                   "while True:\n            print('still thinking')\n        out = None"))
    report = assignments.grade(str(sub), parts=["relu", "dense"], timeout=5)
    assert report["parts"]["relu"]["points"] == 0
    assert "stopped after 5 s" in report["parts"]["relu"]["reasons"][0]
    assert report["parts"]["dense"]["points"] == 10


def test_cli_grades_a_folder_of_submissions_into_one_csv(student, tmp_path):
    csv_path, json_path = tmp_path / "grades.csv", tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "grade", str(REPO), str(student),
                             "--parts", "dense", "relu", "--csv", str(csv_path), "--json", str(json_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "submission,dense,relu,total,max"
    assert rows[1].endswith(",10,10,20,20") and rows[2].endswith(",0,0,0,20")
    bad = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "grade", str(tmp_path / "nothing")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "holds no tinyvgg package" in bad.stderr and "Traceback" not in bad.stderr

"""The student version and the grader, end to end: honest submissions, and hostile ones.

Each hostile submission below is scored exactly what its honest parts earn, leaves
everything outside its folder as it was, and leaves no process behind.
"""
import csv
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from tinyvgg import assignments
from tinyvgg.classroom import bubblewrap, handout, sandbox
from tinyvgg.classroom.checks import PARTS
from tinyvgg.errors import UsageError

REPO = pathlib.Path(handout.REPO_DIR)
PKG = pathlib.Path("src", "tinyvgg")  # where the package sits in the repository, a handout and a submission
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="the grader's limits are POSIX")
NO_SANDBOX = bubblewrap.works()
SANDBOX = pytest.mark.skipif(NO_SANDBOX is not None, reason=f"the grader's sandbox cannot run here: {NO_SANDBOX}")


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "hand-out"
    assert assignments.make(str(out), list(PARTS)) == len(list((REPO / "lessons").glob("*.ipynb")))
    return out


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(folder).rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def submission(tmp_path, *edits, base=None, name="submission"):
    """A copy of the reference package (a perfect submission), or of ``base``, with ``edits``:
    (file, old, new) replacements, or (file, None, text) appended."""
    sub = tmp_path / name
    source = (base or REPO) / PKG
    for path in source.rglob("*.py"):
        if "classroom" not in path.relative_to(source).parts and "__pycache__" not in path.parts:
            target = sub / PKG / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    for file, old, new in edits:
        text = (sub / PKG / file).read_text()
        if old is None:
            text += "\n" + textwrap.dedent(new)
        else:
            assert old in text, old
            text = text.replace(old, new, 1)
        (sub / PKG / file).write_text(text)
    return sub


def points(report):
    return {part: r["points"] for part, r in report["parts"].items()}


def marked_processes(marker):
    """PIDs of live processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            pass
    return found


# ---------------------------------------------------------------- honest submissions

@SANDBOX
def test_the_reference_gets_full_marks():
    report = assignments.grade(str(REPO), timeout=60)
    assert report["total"] == report["max"] == sum(PARTS.values()), report
    assert report["protections"]


@SANDBOX
def test_the_untouched_student_version_gets_zero_with_a_reason_per_part(student):
    before = tree_digest(student)
    report = assignments.grade(str(student), timeout=60)
    assert report["total"] == 0
    for part, result in report["parts"].items():
        assert result["points"] == 0 and result["reasons"], part
        assert all("not implemented yet" in reason for reason in result["reasons"]), result["reasons"]
    assert tree_digest(student) == before  # the grader never writes into a submission


def test_the_student_version_carries_no_solution_and_no_loop_version(student):
    files = {p.relative_to(student): p.read_text() for p in student.rglob("*") if p.suffix in (".py", ".ipynb", ".md")}
    assert not any("### BEGIN SOLUTION" in text for text in files.values())
    assert not (student / PKG / "classroom").exists()  # the grader, its checks, sandbox and loop versions
    assert not list(student.rglob("naive.py"))
    solution_lines = ["cols[:, :, :, i, j, :] = x_pad[:, i:i + Ho, j:j + Wo, :]", "dW2 += cols.T @ dout_2d",
                      "windows.max(axis=(2, 4))", "dgamma = ones @ (dout2 * xhat)", "dgamma = (dout2 * xhat).sum(axis=0)",
                      "v -= self.lr * g"]
    for line in solution_lines:
        assert not any(line in text for text in files.values()), line
    # synchronized batch normalization ships whole: lesson 16 runs it on the student's batch normalization
    assert "dx = scale * (dout2 - sums[:C] / m" in (student / PKG / "training" / "sync_bn.py").read_text()
    readme = (student / "README.md").read_text()  # every blank listed, the optional ones of fastconv.py too
    blanks = sum(p.read_text().count('raise NotImplementedError("part') for p in (student / PKG).rglob("*.py"))
    assert readme.count("\n- `src/tinyvgg/") == blanks and "- `src/tinyvgg/fastconv.py`" in readme


def test_the_student_version_imports_and_keeps_the_rest_intact(student):
    text = (student / PKG / "layers.py").read_text()
    assert 'raise NotImplementedError("part conv")' in text and "[part dense] hint: lesson 2: each output is a weighted sum" in text
    assert 'COMMAND_KERNELS = "reference"' in (student / PKG / "models.py").read_text()
    code = "import tinyvgg.models as m; print(m.vgg16(init='zeros').num_params())"
    result = subprocess.run([sys.executable, "-c", code], cwd=student, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(student / "src")))
    assert result.stdout.strip() == "138357544", result.stderr
    notebook = (student / "lessons" / "02_dense_layer.ipynb").read_text()
    assert "NotImplementedError" in notebook and 'self.grads = {\\"W\\": x.T @ dout' not in notebook


def run_student_tests(folder, *args):
    """The handout's own pytest, run as a student would (the reference tinyvgg is installed here)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_assignment.py",
                           *args], cwd=folder, capture_output=True, text=True, env=env, timeout=300)


def test_the_handouts_own_tests_test_the_handouts_code(tmp_path):
    assignments.make(str(tmp_path / "relu-only"), ["relu"])
    result = run_student_tests(tmp_path / "relu-only")
    summary = result.stdout.strip().splitlines()[-1]
    assert "4 failed" in summary and "passed" not in summary, result.stdout  # 2 checks x 2 seeds, all blank
    assert "not implemented yet" in result.stdout
    fixed = tmp_path / "relu-only" / PKG / "layers.py"
    source = (REPO / PKG / "layers.py").read_text()
    fixed.write_text(source)  # the student "writes" the part: now every test passes
    result = run_student_tests(tmp_path / "relu-only")
    assert result.returncode == 0 and "4 passed" in result.stdout, result.stdout


@SANDBOX
def test_only_the_chosen_parts_are_removed(tmp_path):
    assignments.make(str(tmp_path / "relu-only"), ["relu"])
    report = assignments.grade(str(tmp_path / "relu-only"), timeout=60)
    assert report["parts"]["relu"]["points"] == 0
    assert report["total"] == sum(PARTS.values()) - PARTS["relu"]


@SANDBOX
def test_one_wrong_backward_loses_exactly_that_check(tmp_path):
    sub = submission(tmp_path, ("layers.py", '"b": dout.sum(axis=0)}', '"b": 2 * dout.sum(axis=0)}'))
    report = assignments.grade(str(sub), parts=["dense", "relu"], timeout=60)
    dense = report["parts"]["dense"]
    assert dense["points"] == 4 and len(dense["reasons"]) == 1 and "Dense backward" in dense["reasons"][0]
    assert "db is off" in dense["reasons"][0]
    assert report["total"] == 4 + PARTS["relu"]


@SANDBOX
def test_conv_is_judged_on_its_own_with_the_graders_im2col(student, tmp_path):
    solved_conv = submission(tmp_path, base=student)
    layers = (solved_conv / PKG / "layers.py")
    reference = (REPO / PKG / "layers.py").read_text()
    start, stop = reference.index("class Conv2D"), reference.index("class BatchNorm2D")
    text = layers.read_text()
    before, after = text[:text.index("class Conv2D")], text[text.index("class BatchNorm2D"):]
    layers.write_text(before + reference[start:stop] + after)
    report = assignments.grade(str(solved_conv), parts=["im2col", "conv"], timeout=60)
    assert points(report) == {"im2col": 0, "conv": 20}, report["parts"]


# ---------------------------------------------------------------- hostile submissions

@SANDBOX
@POSIX_ONLY
def test_forged_answers_and_results_score_nothing(student, tmp_path):
    forger = submission(tmp_path, ("__init__.py", None, """
        import glob, json, os, sys, atexit
        import numpy as np
        def forge():
            for path in glob.glob("*.npz") + [sys.argv[2]]:  # every task and the answer it expects
                np.savez(path if "answer" in path else path.replace("task", "answer"),
                         errors=np.array("{}"), **{f"{c}/{k}": np.zeros(3) for c in ("forward", "backward")
                                                   for k in ("out", "dx", "dW", "db")})
            for part in ("dense", "relu", "sgd"):  # the old grader's result files, with made-up points
                with open(f"result-{part}.json", "w") as f:
                    json.dump([{"check": "x", "points": 2000, "max": None, "reason": None}], f)
        forge()
        atexit.register(forge)
        """), base=student)
    report = assignments.grade(str(forger), parts=["dense", "relu", "sgd"], timeout=60)
    assert report["total"] == 0, report["parts"]


@SANDBOX
@POSIX_ONLY
def test_monkeypatched_numpy_and_checks_change_nothing(tmp_path):
    sub = submission(tmp_path, ("layers.py", '"b": dout.sum(axis=0)}', '"b": 2 * dout.sum(axis=0)}'),
                     ("__init__.py", None, """
        import numpy, numpy.testing, numpy.linalg
        numpy.allclose = lambda *a, **k: True
        numpy.testing.assert_allclose = lambda *a, **k: None
        numpy.linalg.norm = lambda *a, **k: 0.0
        try:
            import tinyvgg.classroom.checks as checks
            checks.score = lambda *a, **k: [{"check": "all", "points": 1000, "max": 1000, "reason": None}]
        except Exception:
            pass
        """))
    report = assignments.grade(str(sub), parts=["dense"], timeout=60)
    assert points(report) == {"dense": 4}


@SANDBOX
@POSIX_ONLY
def test_writes_and_deletes_outside_the_submission_are_refused(tmp_path):
    outside = tmp_path / "teacher"
    (outside / "folder").mkdir(parents=True)
    (outside / "grades.csv").write_text("precious")
    (outside / "folder" / "notes.txt").write_text("keep me")
    before = tree_digest(outside)
    sub = submission(tmp_path, ("__init__.py", None, f"""
        import ctypes, os, shutil, pathlib
        outside = {str(outside)!r}
        attempts = [lambda: os.remove(outside + "/grades.csv"),
                    lambda: open(outside + "/grades.csv", "w").write("0"),
                    lambda: open(outside + "/new.txt", "w").write("hello"),
                    lambda: shutil.rmtree(outside + "/folder"),
                    lambda: os.rename(outside + "/grades.csv", outside + "/moved.csv"),
                    lambda: pathlib.Path(outside, "folder", "notes.txt").unlink(),
                    lambda: ctypes.CDLL(None).unlink((outside + "/grades.csv").encode()),
                    lambda: ctypes.pythonapi.unlink((outside + "/grades.csv").encode())]
        for attempt in attempts:
            try:
                attempt()
            except Exception as err:
                print("refused:", type(err).__name__, err)
        """))
    report = assignments.grade(str(sub), parts=["relu", "dense"], timeout=60)
    assert points(report) == {"relu": PARTS["relu"], "dense": PARTS["dense"]}
    assert tree_digest(outside) == before


@SANDBOX
@POSIX_ONLY
def test_killing_the_grader_is_refused(tmp_path):
    """The sandbox sees no process of the machine: the grader's PID names nothing (or itself) in there."""
    sub = submission(tmp_path, ("__init__.py", None, f"""
        import os, signal
        for attempt in (lambda: os.kill({os.getpid()}, signal.SIGKILL), lambda: os.kill(os.getppid(), signal.SIGKILL),
                        lambda: os.kill(1, signal.SIGTERM)):
            try:
                attempt()
            except Exception:
                pass
        """))
    report = assignments.grade(str(sub), parts=["relu"], timeout=60)
    assert points(report) == {"relu": PARTS["relu"]}


@SANDBOX
@POSIX_ONLY
def test_no_process_started_by_a_submission_outlives_the_grader(tmp_path):
    marker = f"tinyvgg-stray-{os.getpid()}-{time.time_ns()}"
    sub = submission(tmp_path, ("__init__.py", None, f"""
        import os, subprocess, sys
        for attempt in (lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"],
                                                 start_new_session=True),
                        lambda: os.fork()):
            try:
                if attempt() == 0:  # a forked child: become a daemon and wait
                    os.setsid()
                    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
            except Exception:
                pass
        """))
    report = assignments.grade(str(sub), parts=["relu"], timeout=60)
    assert points(report) == {"relu": PARTS["relu"]}
    assert marked_processes(marker) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the child subreaper is Linux's")
def test_the_reaper_kills_detached_grandchildren(tmp_path):
    marker = f"tinyvgg-detached-{os.getpid()}-{time.time_ns()}"
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)", marker]
    script = textwrap.dedent(f"""
        import os, subprocess, sys
        subprocess.Popen({sleeper!r}, start_new_session=True)        # a new session: escapes killpg
        if os.fork() == 0:                                            # a classic daemon: double fork, setsid
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, {sleeper!r})
            os._exit(0)
        print("started")
        """)
    status, _ = sandbox.run_limited([sys.executable, "-c", script], str(tmp_path), dict(os.environ), 30,
                                    str(tmp_path / "log"), 1 << 20)
    assert status == "exited" and "started" in (tmp_path / "log").read_text()
    assert marked_processes(marker) == []


@SANDBOX
@POSIX_ONLY
def test_an_output_flood_costs_only_its_part(tmp_path):
    sub = submission(tmp_path, ("layers.py", "out = xp.maximum(x, 0)",
                                "while True:\n            print('x' * 1000)\n        out = None"))
    start = time.perf_counter()
    report = assignments.grade(str(sub), parts=["relu", "dense"], timeout=60)
    assert time.perf_counter() - start < 30
    assert points(report) == {"relu": 0, "dense": PARTS["dense"]}
    assert "printed more than 1 MB" in report["parts"]["relu"]["reasons"][0]


@SANDBOX
def test_an_endless_loop_is_stopped_and_the_other_parts_are_graded(tmp_path):
    sub = submission(tmp_path, ("layers.py", "out = xp.maximum(x, 0)",
                                "while True:\n            pass\n        out = None"))
    report = assignments.grade(str(sub), parts=["relu", "dense"], timeout=3)
    assert points(report) == {"relu": 0, "dense": PARTS["dense"]}
    assert "stopped after 3 s" in report["parts"]["relu"]["reasons"][0]


@POSIX_ONLY
@pytest.mark.parametrize("sabotage, reason", [
    ("import atexit, sys; atexit.register(lambda: open(sys.argv[2], 'wb').write(b'junk'))", "answer was malformed"),
    ("import atexit, sys, numpy; atexit.register(lambda: numpy.savez(sys.argv[2], errors=numpy.array([1])))",
     "answer was malformed"),
    ("import os; os.abort()", "did not finish"),
    ("import numpy; numpy.ones(10**11)", "MemoryError"),
    ("import os; [open(f'big{i}', 'wb').write(b'0' * (15 << 20)) for i in range(40)]", "No space left on device"),
    ("import os, sys; [open(f'{sys.argv[2]}.{i}', 'wb').write(b'0' * (15 << 20)) for i in range(40)]",
     "MB of files"),  # beside the answer, the one folder on disk: the grader stops it
    ("open('huge', 'wb').write(b'0' * (40 << 20))", "File too large"),  # the file-size limit
])
@SANDBOX
def test_a_crash_or_a_malformed_answer_costs_only_its_part(tmp_path, sabotage, reason):
    sub = submission(tmp_path, ("layers.py", "out = xp.maximum(x, 0)",
                                f"{sabotage}\n        out = xp.maximum(x, 0)"))
    report = assignments.grade(str(sub), parts=["relu", "dense"], timeout=60)
    assert points(report) == {"relu": 0, "dense": PARTS["dense"]}
    assert any(reason in r for r in report["parts"]["relu"]["reasons"]), report["parts"]["relu"]["reasons"]


# ---------------------------------------------------------------- the command line

@SANDBOX
def test_the_teachers_flow_grades_what_the_handout_gave_out(tmp_path):
    """make --parts conv pool dense, then grade with no --parts (as the README shows): the untouched handout
    scores 0 of 40, not 60 of 100 for the parts it already held; the first line says where the parts came from."""
    handout = tmp_path / "handout"
    assert subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "make", str(handout), "--parts", "conv",
                           "pool", "dense"], capture_output=True, timeout=300).returncode == 0
    carol = tmp_path / "carol"
    shutil.copytree(handout, carol)
    result = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "grade", str(carol), "--csv",
                             str(tmp_path / "g.csv")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == ("grading conv, pool, dense (40 points), from the handout.json the "
                                             "submissions carry")
    rows = list(csv.reader((tmp_path / "g.csv").open()))
    assert rows[0] == ["submission", "conv", "pool", "dense", "total", "max", "note"] and rows[1][4:6] == ["0", "40"]
    readme = (handout / "README.md").read_text()                # the lessons' blanks are listed, with their part
    assert "`lessons/02_dense_layer.ipynb`, code cell" in readme and "(part dense)" in readme


def test_an_edited_handout_json_cannot_shrink_what_is_graded(tmp_path):
    from tinyvgg.assignments import choose_parts, main
    handout = tmp_path / "handout"
    main(["make", str(handout), "--parts", "conv", "pool", "dense"])
    alice, mallory = tmp_path / "alice", tmp_path / "mallory"
    for who in (alice, mallory):
        (who).mkdir()
        shutil.copy(handout / "handout.json", who / "handout.json")
    manifest = json.loads((mallory / "handout.json").read_text())
    del manifest["parts"]["conv"]                               # "only pool and dense were handed out to me"
    (mallory / "handout.json").write_text(json.dumps(manifest))
    args = assignments_args(str(alice), str(mallory))
    with pytest.raises(UsageError, match="handout.json files disagree on the parts"):
        choose_parts(args)
    args.handout = str(handout)                                  # the teacher's own copy decides
    assert choose_parts(args)[0] == ["conv", "pool", "dense"]


GRADESCOPE_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def check_results_json(data, parts):
    """results.json against Gradescope's specification: the fields, their types, and scores that add up."""
    assert set(data) == {"score", "execution_time", "output", "stdout_visibility", "tests"}, data.keys()
    assert isinstance(data["score"], float) and isinstance(data["execution_time"], int)
    assert isinstance(data["output"], str) and data["stdout_visibility"] in GRADESCOPE_VISIBILITY
    assert [t["name"] for t in data["tests"]] == [f"part {p}" for p in parts]
    for test in data["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}, test.keys()
        assert isinstance(test["score"], float) and isinstance(test["max_score"], float)
        assert 0 <= test["score"] <= test["max_score"] and test["status"] in ("passed", "failed")
        assert isinstance(test["output"], str) and test["visibility"] in GRADESCOPE_VISIBILITY
    assert data["score"] == sum(t["score"] for t in data["tests"])


@SANDBOX
def test_the_gradescope_autograder_grades_as_grade_does(tmp_path, student):
    """The zip's run_autograder, with /autograder moved to a temporary folder (AUTOGRADER_ROOT) and this Python
    standing in for the venv setup.sh makes: honest, blank and hostile uploads, results.json to specification,
    scores equal to grade's. Not run here: Gradescope itself (its Ubuntu image, its upload and its container)."""
    import zipfile
    zip_path = tmp_path / "autograder.zip"
    done = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "gradescope", str(zip_path), "--parts",
                           "relu", "dense", "pool"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        assert {"setup.sh", "run_autograder", "tinyvgg_autograder.json"} <= set(names)
        assert "src/tinyvgg/classroom/grader.py" in names
        assert archive.getinfo("run_autograder").external_attr >> 16 & 0o111    # executable once unzipped
    hostile = submission(tmp_path, ("layers.py", "out = xp.maximum(x, 0)", "import atexit, os, sys; atexit.register("
                                    "lambda: (os.remove(sys.argv[2]), os.symlink('/etc/shadow', sys.argv[2])))\n"
                                    "        out = xp.maximum(x, 0)"), name="hostile")
    for name, upload in (("honest", REPO), ("blank", student), ("hostile", hostile)):
        root = tmp_path / name / "autograder"
        (root / "source").mkdir(parents=True)
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(root / "source")
        (root / "source" / "run_autograder").chmod(0o755)
        shutil.copytree(upload / "src", root / "submission" / "handed-in" / "src")  # a zip of the folder, unpacked
        run = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                             timeout=600, env=dict(os.environ, AUTOGRADER_ROOT=str(root),
                                                   AUTOGRADER_PYTHON=sys.executable))
        assert run.returncode == 0, run.stderr[-2000:]
        data = json.loads((root / "results" / "results.json").read_text())
        check_results_json(data, ["relu", "dense", "pool"])
        report = assignments.grade(str(upload), parts=["relu", "dense", "pool"], timeout=60)
        assert data["score"] == report["total"] == {"honest": 25, "blank": 0, "hostile": 20}[name], (name, data)
        assert "bubblewrap sandbox" in data["output"]
        if name == "hostile":
            assert "the answer was a link" in data["tests"][0]["output"] and "shadow" not in json.dumps(data)


def test_where_bubblewrap_cannot_run_results_json_says_the_container_is_the_boundary():
    from tinyvgg.classroom.gradescope import results
    report = {"total": 5, "parts": {"relu": {"points": 5, "max": 5, "reasons": [], "checks": [
        {"check": "ReLU forward", "points": 5, "max": 5, "reason": None}]}}}
    data = results(report, "unsafe", "user namespaces are not allowed", 1.2)
    check_results_json(data, ["relu"])
    assert "Gradescope's container, one per submission (bubblewrap cannot run in it" in data["output"]


def assignments_args(*student_dirs, parts=None, handout=None):
    import argparse
    return argparse.Namespace(student_dirs=list(student_dirs), parts=parts, handout=handout)



@SANDBOX
def test_cli_grades_a_batch_with_broken_submissions_into_one_csv(student, tmp_path):
    csv_path, json_path = tmp_path / "grades.csv", tmp_path / "report.json"
    flood = submission(tmp_path, ("layers.py", "out = xp.maximum(x, 0)",
                                  "while True:\n            print('x' * 1000)\n        out = None"), name="flood")
    result = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "grade", str(REPO), str(student),
                             str(tmp_path / "nothing"), str(flood), "--parts", "dense", "relu", "--csv", str(csv_path),
                             "--json", str(json_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "submission,dense,relu,total,max,note"
    assert rows[1].endswith(",10,5,15,15,") and rows[2].endswith(",0,0,0,15,")
    assert "holds no tinyvgg package" in rows[3] and rows[4].endswith(",10,0,10,15,")
    again = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "grade", str(REPO), "--parts", "relu",
                            "--csv", str(csv_path)], capture_output=True, text=True)
    assert again.returncode == 1 and "already exists; pass --force" in again.stderr
    assert csv_path.read_text().splitlines() == rows


@pytest.mark.parametrize("args, message", [
    (["--timeout", "-1"], "--timeout must be a number of seconds above 0"),
    (["--timeout", "nan"], "--timeout must be a number of seconds above 0"),
    (["--memory-limit", "0"], "--memory-limit must be between"),
    (["--csv", "{tmp}/missing/grades.csv"], "does not exist; create it first"),
])
def test_cli_refuses_bad_options_before_grading(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "grade", str(REPO), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert "points" not in result.stdout  # refused before any grading


def test_make_into_a_folder_that_cannot_be_written_says_so_in_one_sentence(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "make", "/proc/handout"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: cannot write the student version to /proc/handout")


def test_the_student_readme_lists_each_hint_whole(student):
    readme = (student / "README.md").read_text()
    source = (REPO / PKG / "layers.py").read_text()
    start = source.index("# [part batchnorm] hint:")
    continued = source[start:].split("\n")[1].strip().lstrip("#").strip()  # the hint's second comment line
    assert continued and continued in readme

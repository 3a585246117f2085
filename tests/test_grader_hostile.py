"""Issue 21: a grade is what the submitted files compute, whatever else the submission tries.

Each test is one attack a hostile student tried on the old grader (a Python guard rail that
let the code read the machine): the blank-handout tricks now score 0, a classmate scores only
their own work, nothing of the grader's environment reaches a report, no process of a
submission outlives its part, and the batch always finishes with every row in its CSV.
"""
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from test_assignments import PARTS, PKG, REPO, SANDBOX, marked_processes, points, submission

from tinyvgg import assignments
from tinyvgg.classroom import cgroup, checks


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("blank") / "hand-out"
    assignments.make(str(out), list(PARTS))
    return out


def in_relu(code):
    """``code`` as the body of ReLU.forward (indented to fit), before its honest last line."""
    lines = textwrap.dedent(code).strip().splitlines() + ["out = xp.maximum(x, 0)"]
    return ("layers.py", "out = xp.maximum(x, 0)", "\n        ".join(lines))


def blank(tmp_path, student, name="blank"):
    """A copy of the untouched student version (every part still ``NotImplementedError``)."""
    return submission(tmp_path, base=student, name=name)


def cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "grade", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, **kwargs)


def with_init(tmp_path, code, base=None, name="submission"):
    """A submission (the reference, or ``base``) whose ``__init__.py`` also runs ``code``."""
    return submission(tmp_path, ("__init__.py", None, textwrap.dedent(code)), base=base, name=name)


# ---------------------------------------------------------------- the blank-handout tricks score 0

@SANDBOX
def test_missing_modules_are_not_found_in_the_graders_package(tmp_path, student):
    sub = blank(tmp_path, student)
    (sub / PKG / "im2col.py").unlink()
    (sub / PKG / "optim.py").unlink()
    report = assignments.grade(str(sub), parts=["im2col", "dense", "sgd"], timeout=60)
    assert report["total"] == 0, report["parts"]
    assert any("No module named 'tinyvgg.im2col'" in r for r in report["parts"]["dense"]["reasons"])


@SANDBOX
@pytest.mark.parametrize("link", ["src/tinyvgg/layers.py", "src/tinyvgg", "src"])
def test_a_link_anywhere_in_the_submission_is_refused(tmp_path, student, link):
    sub = blank(tmp_path, student)
    target = {"src/tinyvgg/layers.py": sub / PKG / "__init__.py", "src/tinyvgg": REPO / PKG, "src": REPO / "src"}[link]
    path = sub / link
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)
    result = cli(sub, "--parts", "relu", "dense", "--csv", tmp_path / "grades.csv")
    assert result.returncode == 0, result.stderr
    row = list(csv.reader((tmp_path / "grades.csv").open()))[1]
    assert row[1:4] == ["0", "0", "0"] and "symbolic link" in row[-1], row


@SANDBOX
def test_the_installed_reference_is_out_of_reach(tmp_path, student):
    """Through importlib.metadata, the import system or a path: the grader's package is not there."""
    sub = with_init(tmp_path, f"""
        import importlib.metadata, importlib.util, sys
        def borrow(path):
            spec = importlib.util.spec_from_file_location("tinyvgg.layers", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules["tinyvgg.layers"] = module
            spec.loader.exec_module(module)
        candidates = [{str(REPO / PKG / "layers.py")!r}]
        try:
            dist = importlib.metadata.distribution("tinyvgg")
            candidates += [str(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith("layers.py")]
            candidates += [line.strip() + "/tinyvgg/layers.py" for line in (dist.read_text("direct_url.json") or "")
                           .split('"') if line.startswith("/")]
        except Exception as err:
            print("no distribution:", err)
        for path in candidates:
            try:
                borrow(path)
                break
            except Exception as err:
                print("cannot borrow", path, err)
        """, base=student)
    report = assignments.grade(str(sub), parts=["relu", "dense"], timeout=60)
    assert report["total"] == 0, report["parts"]


@SANDBOX
def test_a_classmate_scores_only_their_own_work(tmp_path, student):
    honest = submission(tmp_path, name="alice")
    cheat = with_init(tmp_path, f"""
        import glob, importlib.util, os, sys
        found = [{str(honest / PKG / "layers.py")!r}]  # the name is no secret: try it, and look for others
        for cmdline in glob.glob("/proc/*/cmdline"):
            try:
                found += [a for a in open(cmdline, "rb").read().decode(errors="ignore").split("\\0") if "/" in a]
            except OSError:
                pass
        for path in found:
            path = path if path.endswith(".py") else os.path.join(path, "src", "tinyvgg", "layers.py")
            try:
                spec = importlib.util.spec_from_file_location("tinyvgg.layers", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules["tinyvgg.layers"] = module
                break
            except Exception:
                pass
        """, base=student, name="mallory")
    result = cli(honest, cheat, "--parts", "relu", "dense", "--csv", tmp_path / "grades.csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader((tmp_path / "grades.csv").open()))
    assert [row[1:4] for row in rows[1:]] == [["5", "10", "15"], ["0", "0", "0"]], rows


@SANDBOX
def test_the_loop_oracle_never_reaches_the_child(tmp_path, student):
    sub = with_init(tmp_path, """
        import os, sys
        sys.path += [os.getcwd(), "/grader"]
        import tinyvgg.im2col as ours
        try:
            import _grader_naive as naive
            ours.im2col = lambda x, K=3, padding="same": naive.im2col(x, K, K // 2 if padding == "same" else 0)
        except ImportError as err:
            print(err)
        """, base=student)
    report = assignments.grade(str(sub), parts=["im2col"], timeout=60)
    assert report["total"] == 0, report["parts"]
    arrays = checks.make_task("conv", 1).input_arrays()  # conv's lent im2col is numbers: gather indices, not code
    lent = [name for name in arrays if name.startswith("lend/")]
    assert lent and all(arrays[name].dtype.kind == "i" for name in lent)
    assert "reference_im2col" not in str(checks.make_task("conv", 1).meta())


# ---------------------------------------------------------------- the machine stays out of reach

@SANDBOX
def test_no_environment_value_of_the_grader_reaches_a_report(tmp_path):
    secret = f"s3cret-{os.getpid()}-{time.time_ns()}"
    sub = with_init(tmp_path, """
        import glob, os
        found = dict(os.environ)
        for path in glob.glob("/proc/*/environ") + ["/proc/1/environ", f"/proc/{os.getppid()}/environ"]:
            try:
                found[path] = open(path, "rb").read().decode(errors="replace")
            except OSError as err:
                found[path] = str(err)
        raise RuntimeError(repr(found))
        """)
    env = dict(os.environ, TINYVGG_TEACHER_TOKEN=secret)
    result = cli(sub, "--parts", "relu", "--json", tmp_path / "r.json", "--csv", tmp_path / "g.csv", env=env)
    assert result.returncode == 0, result.stderr
    everything = result.stdout + result.stderr + (tmp_path / "r.json").read_text() + (tmp_path / "g.csv").read_text()
    assert "RuntimeError" in everything  # the attempt ran, and said what it saw
    assert secret not in everything and "TINYVGG_TEACHER_TOKEN" not in everything


@SANDBOX
def test_no_datagram_or_socket_connection_reaches_the_machine(tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "listener.sock"))
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0tinyvgg-test-{os.getpid()}")
    abstract.listen()
    sub = with_init(tmp_path, f"""
        import socket
        for family, kind, address in ((socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", {udp.getsockname()[1]})),
                                      (socket.AF_UNIX, socket.SOCK_STREAM, {str(tmp_path / "listener.sock")!r}),
                                      (socket.AF_UNIX, socket.SOCK_STREAM, "\\0tinyvgg-test-{os.getpid()}")):
            try:
                s = socket.socket(family, kind)
                s.connect(address) if kind == socket.SOCK_STREAM else s.sendto(b"exfiltrated", address)
                s.sendall(b"exfiltrated") if kind == socket.SOCK_STREAM else None
            except OSError as err:
                print("refused:", err)
        """)
    report = assignments.grade(str(sub), parts=["relu"], timeout=60)
    assert points(report) == {"relu": PARTS["relu"]}
    for listener in (udp, unix, abstract):
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.recv(100) if listener is udp else listener.accept()
        listener.close()


def _kernel_log_has(marker):
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None  # this machine does not let the tests read the kernel log
    found = False
    try:
        while True:
            try:
                found |= marker.encode() in os.read(fd, 8192)
            except BlockingIOError:
                return found
            except OSError:  # EPIPE: a record was overwritten while reading; read on
                continue
    finally:
        os.close(fd)


@SANDBOX
def test_no_device_node_and_no_kernel_log_line(tmp_path):
    marker = f"tinyvgg-kmsg-{os.getpid()}-{time.time_ns()}"
    sub = with_init(tmp_path, f"""
        import os, stat
        made = []
        for name, major, minor in (("kmsg", 1, 11), ("mem", 1, 1), ("sda", 8, 0)):
            try:
                os.mknod(name, 0o666 | stat.S_IFCHR if name != "sda" else 0o666 | stat.S_IFBLK, os.makedev(major, minor))
                made.append(name)
            except OSError as err:
                print("refused:", err)
        for name in ("kmsg", "/dev/kmsg"):
            try:  # a device node would log the line; a plain file of that name (in the sandbox's own /dev) does not
                with open(name, "a") as f:
                    f.write("{marker}\\n")
                if not stat.S_ISREG(os.stat(name).st_mode):
                    made.append(name)
            except OSError as err:
                print("refused:", err)
        if made:
            raise RuntimeError("wrote to devices: " + " ".join(made))
        """)
    report = assignments.grade(str(sub), parts=["relu"], timeout=60)
    assert points(report) == {"relu": PARTS["relu"]}, report["parts"]
    assert _kernel_log_has(marker) in (None, False)


@SANDBOX
def test_no_process_of_a_deep_chain_of_sessions_survives_the_part(tmp_path):
    marker = f"tinyvgg-chain-{os.getpid()}-{time.time_ns()}"
    sub = with_init(tmp_path, f"""
        import multiprocessing, os, subprocess
        for depth in range(130):  # each one a session leader whose parent exits
            try:
                if os.fork() != 0:
                    break
                os.setsid()
            except OSError:
                break
        if depth:
            try:
                subprocess.Popen(["/bin/sh", "-c", "sleep 120", "{marker}"], start_new_session=True)
            finally:
                os._exit(0)
        """)
    report = assignments.grade(str(sub), parts=["relu"], timeout=60)
    assert points(report) == {"relu": PARTS["relu"]}
    time.sleep(0.5)
    assert marked_processes(marker) == []


@SANDBOX
@pytest.mark.skipif(cgroup.available() is not None, reason=f"no cgroup for the grader here: {cgroup.available()}")
def test_memory_is_limited_for_the_sandbox_not_per_process(tmp_path):
    """Three helpers of 300 MB each are under 0.5 GB alone; together the sandbox's cgroup stops them."""
    sub = submission(tmp_path, in_relu("""
        import os, time
        helpers = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                block = np.ones(300 << 17)  # 300 MB, touched
                time.sleep(2)
                os._exit(0)
            helpers.append(pid)
        if all(os.waitpid(pid, 0)[1] == 0 for pid in helpers):
            raise RuntimeError("three helpers held 900 MB")
        """))
    report = assignments.grade(str(sub), parts=["relu"], timeout=30, memory_gb=0.5)
    assert report["parts"]["relu"]["points"] == PARTS["relu"], report["parts"]


# ---------------------------------------------------------------- the grader survives

@SANDBOX
def test_the_batch_survives_a_deep_tree_and_undeletable_files(tmp_path):
    sub = with_init(tmp_path, """
        import fcntl, os, struct, sys
        for folder in (os.getcwd(), os.path.dirname(sys.argv[2])):  # the working folder, and the answer's
            os.chdir(folder)
            os.makedirs("locked/inner")
            open("locked/inner/file", "w").write("x")
            try:  # chattr +i: FS_IOC_SETFLAGS with FS_IMMUTABLE_FL
                fd = os.open("locked/inner/file", os.O_RDONLY)
                fcntl.ioctl(fd, 0x40086602, struct.pack("i", 0x10))
            except OSError as err:
                print("refused:", err)
            os.chmod("locked/inner", 0)
            os.chmod("locked", 0o500)
            for _ in range(1100):
                os.mkdir("d")
                os.chdir("d")
        os.chdir("/")
        """)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = cli(sub, REPO, "--parts", "relu", "--csv", tmp_path / "g.csv", env=dict(os.environ, TMPDIR=str(scratch)))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = list(csv.reader((tmp_path / "g.csv").open()))
    assert [row[1] for row in rows[1:]] == ["5", "5"], rows
    assert list(scratch.iterdir()) == []  # every scratch folder removed


def hanging(tmp_path):
    """(marker, submission): a submission whose ReLU starts a detached process named ``marker`` and hangs."""
    marker = f"tinyvgg-hang-{os.getpid()}-{time.time_ns()}"
    return marker, submission(tmp_path, in_relu(f"""
        import subprocess, time
        subprocess.Popen(["/bin/sh", "-c", "sleep 120", "{marker}"], start_new_session=True)
        time.sleep(600)
        """), name="hang")


@SANDBOX
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])  # SIGHUP: the terminal closed
def test_a_signal_to_the_grader_ends_its_children_and_writes_what_was_graded(tmp_path, signum):
    marker, hang = hanging(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    grader = subprocess.Popen([sys.executable, "-m", "tinyvgg.assignments", "grade", str(REPO), str(hang),
                               "--parts", "relu", "--csv", str(tmp_path / "g.csv")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, TMPDIR=str(scratch)))
    deadline = time.time() + 120
    while not marked_processes(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert marked_processes(marker), "the hanging submission never started"
    grader.send_signal(signum)
    _, err = grader.communicate(timeout=60)
    assert grader.returncode == 128 + signum and "Traceback" not in err, err
    assert "1 of 2 submissions graded" in err
    rows = list(csv.reader((tmp_path / "g.csv").open()))
    assert len(rows) == 2 and rows[1][1] == "5", rows
    time.sleep(0.5)
    assert marked_processes(marker) == []
    assert list(scratch.iterdir()) == []                          # its scratch folder removed
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------- no answer can stop a batch (issue 31)

HOSTILE_ANSWERS = {  # each: the code in ReLU.forward, what the hostile row's reason must say, its honest points
    "errors nested 100,000 deep": ("import atexit, sys, numpy; atexit.register(lambda: numpy.savez(sys.argv[2], "
                                   "errors=numpy.array('[' * 100000 + ']' * 100000)))", "answer was malformed", 0),
    "an answer of 1e-320": ("x = x * 1e-320", "nearly all zeros", 3),   # the forward is wrong, the backward right
    "the answer replaced by a link": ("import atexit, os, sys; atexit.register(lambda: (os.remove(sys.argv[2]), "
                                      "os.symlink('/etc/shadow', sys.argv[2])))", "the answer was a link", 0),
    "errors with empty reasons, and code that raises": (
        "import atexit, sys, json, numpy; atexit.register(lambda: numpy.savez(sys.argv[2], errors=numpy.array("
        "json.dumps({'forward': '', 'backward': ''})))); raise NotImplementedError", "an error without a message", 0),
    "a link to a path that does not exist": ("import atexit, os, sys; atexit.register(lambda: (os.remove(sys.argv[2]), "
                                             "os.symlink('/nonexistent/x', sys.argv[2])))", "the answer was a link", 0),
    "5,000 arrays": ("import atexit, sys, numpy; atexit.register(lambda: numpy.savez(sys.argv[2], "  # the issue: 60,000
                     "**{f'a{i}': numpy.zeros(1) for i in range(5000)}))", "more than the 1,000 expected", 0),
}


@SANDBOX
@pytest.mark.parametrize("case", sorted(HOSTILE_ANSWERS))
def test_a_hostile_answer_scores_its_part_0_and_the_batch_completes(tmp_path, case):
    code, reason, honest = HOSTILE_ANSWERS[case]
    hostile = submission(tmp_path, in_relu(code), name="hostile")
    start = time.time()
    result = cli(REPO, hostile, REPO, "--parts", "relu", "dense", "--csv", tmp_path / "g.csv", "--json",
                 tmp_path / "r.json")
    assert result.returncode == 0 and "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    assert "Warning" not in result.stdout + result.stderr                      # no NumPy warning in a report
    rows = list(csv.reader((tmp_path / "g.csv").open()))
    assert [row[1:3] for row in rows[1:]] == [["5", "10"], [str(honest), "10"], ["5", "10"]], rows  # honest: full
    relu = json.loads((tmp_path / "r.json").read_text())[1]["parts"]["relu"]
    assert any(reason in r for r in relu["reasons"]), relu["reasons"]
    if "link" in case:
        assert not any(word in " ".join(relu["reasons"]) for word in ("shadow", "root", "Permission", "zip"))
    assert time.time() - start < 240


@SANDBOX
def test_what_a_killed_grader_left_is_removed_by_the_next_run(tmp_path):
    """SIGKILL cannot be handled: the grader's scratch folder (and its part's cgroup, where it made one) stay
    behind. The next grading run removes those of graders that are gone."""
    marker, hang = hanging(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    grader = subprocess.Popen([sys.executable, "-m", "tinyvgg.assignments", "grade", str(hang), "--parts", "relu"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not marked_processes(marker) and time.time() < deadline:
        time.sleep(0.1)
    grader.kill()
    grader.wait()
    left = [p.name for p in scratch.iterdir()]
    assert left and all(name.startswith(f"tinyvgg-grade-{grader.pid}-") for name in left), left
    result = cli(REPO, "--parts", "relu", env=env)
    assert result.returncode == 0, result.stderr
    assert list(scratch.iterdir()) == [], "the killed grader's scratch folder is still there"
    if cgroup.available() is None:
        parents = {os.path.dirname(f) for f in cgroup._folders("probe").values()}
        assert not [n for parent in parents for n in os.listdir(parent) if n.startswith(f"tinyvgg-{grader.pid}-")]


@SANDBOX
def test_a_dropout_that_answers_nan_scores_nothing(tmp_path):
    """NaN is neither zero nor a kept unit: a Dropout whose output and gradient are NaN once passed both checks."""
    sub = submission(tmp_path, ("layers.py", "        return x * mask\n", "        return xp.where(mask != 0, xp.nan, 0.0)\n"),
                     ("layers.py", "        return dout * self.cache\n", "        return dout * float('nan')\n"),
                     name="nan")
    report = assignments.grade(str(sub), parts=["dropout"], timeout=60)
    train = report["parts"]["dropout"]["checks"][1]
    assert train["points"] == 0 and "finite" in train["reason"], report["parts"]["dropout"]


def test_feedback_is_total_and_names_tied_maxima():
    """The feedback's arithmetic never fails (an answer 1e-320 times the right one made 1 / s infinite), and a
    max-pool backward that sends the gradient to every tied maximum is told so, not given a ReLU hint."""
    import numpy as np

    from tinyvgg.classroom import feedback, naive
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, (2, 4, 6, 2)).astype(np.float64)                   # the graded inputs' ties
    dout = rng.standard_normal((2, 2, 3, 2))
    want = naive.maxpool_backward(x, dout)
    windows = x.reshape(2, 2, 2, 3, 2, 2)
    every = ((windows == windows.max(axis=(2, 4), keepdims=True)) * dout[:, :, None, :, None, :]).reshape(x.shape)
    assert "every tied maximum" in feedback.diagnose("dx", every, want, {"x": x, "dout": dout})
    for scale, words in ((1e-320, "nearly all zeros"), (0.0, "all zeros"), (1e300, "far too large"),
                         (-1.0, "wrong sign"), (4.0, "4 times too large")):
        with np.errstate(all="ignore"):
            assert words in feedback.diagnose("dx", want * scale, want, {"x": x, "dout": dout}), scale


# ---------------------------------------------------------------- a report that cannot lie

@SANDBOX
def test_terminal_escapes_from_student_code_are_shown_escaped(tmp_path):
    sub = with_init(tmp_path, r"""
        raise RuntimeError("\x1b[2J\x1b[H\x1b]52;c;ZXZpbA==\x07\nalice: 100 / 100\r\u202e")
        """)
    result = cli(sub, "--parts", "relu", "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\u202e" not in result.stdout
    assert not any(line.startswith("alice") for line in result.stdout.splitlines())
    assert r"\x1b[2J" in result.stdout and r"\nalice: 100 / 100" in result.stdout
    assert r"\\x1b" not in result.stdout  # escaped once, not twice
    assert "\\u001b" not in (tmp_path / "r.json").read_text()  # JSON holds the escaped text, not the escape


@SANDBOX
@pytest.mark.parametrize("answer, kind", [("xp.maximum(x, 0) + 1j", "complex"), ("xp.maximum(x, 0).astype(int)", "integer"),
                                          ("xp.maximum(x, 0).astype(object)", "not an array of numbers")])
def test_answers_must_be_real_float_arrays(tmp_path, answer, kind):
    sub = submission(tmp_path, ("layers.py", "out = xp.maximum(x, 0)", f"out = {answer}"))
    report = assignments.grade(str(sub), parts=["relu"], timeout=60)
    relu = report["parts"]["relu"]
    assert relu["checks"][0]["points"] == 0 and kind in relu["checks"][0]["reason"], relu


# ---------------------------------------------------------------- options checked before any work

@pytest.mark.parametrize("args, message", [
    (["--timeout", "1e30"], "--timeout must be a number of seconds above 0 and at most 3600"),
    (["--timeout", "inf"], "--timeout must be a number of seconds above 0 and at most 3600"),
    (["--memory-limit", "1e30"], "--memory-limit must be between"),
    (["--memory-limit", "1e-12"], "--memory-limit must be between"),
    (["--seed", "-1"], "--seed must be between 0 and 2**32 - 1"),
    (["--seed", str(2**32)], "--seed must be between 0 and 2**32 - 1"),
    (["--parts", "relu", "relu", "dense"], "--parts names relu more than once"),
    (["--csv", "/proc/x.csv"], "--csv /proc/x.csv: cannot write in /proc"),
    (["--json", "/proc/x.json"], "--json /proc/x.json: cannot write in /proc"),
])
def test_bad_options_are_refused_before_grading(args, message):
    result = cli(REPO, *args)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "points" not in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_submission_name_that_is_not_utf8_is_refused_before_grading(tmp_path):
    odd = os.path.join(os.fsencode(tmp_path), b"student-\xff")
    os.mkdir(odd)
    result = subprocess.run([sys.executable, "-m", "tinyvgg.assignments", "grade", os.fsencode(REPO), odd,
                             b"--csv", os.fsencode(tmp_path / "g.csv")], capture_output=True, timeout=120)
    assert result.returncode == 1 and b"is not valid UTF-8; rename the folder" in result.stderr, result.stderr
    assert b"Traceback" not in result.stderr and not (tmp_path / "g.csv").exists()


def test_without_bubblewrap_the_grader_refuses_unless_told_it_is_unsafe(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no bwrap on this PATH
    refused = cli(REPO, "--parts", "relu", env=env)
    assert refused.returncode == 1 and "--unsafe-no-sandbox" in refused.stderr and "Traceback" not in refused.stderr
    assert "points" not in refused.stdout
    unsafe = cli(REPO, "--parts", "relu", "--unsafe-no-sandbox", env=env)
    assert unsafe.returncode == 0 and "5 / 5 points" in unsafe.stdout, unsafe.stderr
    assert "can read every file" in unsafe.stderr


def test_doctor_says_whether_the_graders_sandbox_works(monkeypatch):
    from tinyvgg.classroom import bubblewrap
    monkeypatch.setattr(bubblewrap, "find_bwrap", lambda: None)
    bubblewrap.works.cache_clear()
    try:
        line = bubblewrap.doctor_line()
    finally:
        bubblewrap.works.cache_clear()
    assert line.startswith("Grader sandbox: ") and "--unsafe-no-sandbox" in line
    if sys.platform.startswith("linux"):
        assert "bubblewrap is not installed" in line

"""``python -m tinyvgg.assignments``: student versions of tinyvgg, and a grader.

The reference code marks the parts students write with nbgrader's solution
markers, preceded by a line naming the part and giving a hint::

    # [part dense] hint: out = x @ W + b; keep x for backward when training
    ### BEGIN SOLUTION
    ...the reference implementation...
    ### END SOLUTION

``make OUT_DIR [--parts dense relu ...]`` writes a student copy: every marked
region of the chosen parts becomes ``raise NotImplementedError`` under the kept
hint, the other parts keep their solution (without the markers), and a line
ending in ``# STUDENT: <code>`` becomes ``<code>`` (this switches the fast
kernels off, which would otherwise give the convolution away). The copy is an
installable package with the student tests and a README; lesson notebooks with
marked cells are converted the same way.

``grade STUDENT_DIR... [--json REPORT] [--csv GRADES]`` runs each part's checks
(``assignment_checks.py``) in its own process on a copy of the submission, with
inputs drawn from a fresh random seed, a time limit per part, and the output
of the student's code sent to a file: code that raises, hangs or prints
without end costs that part's points and nothing else. Submissions are never
modified.
"""
import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

from . import cli

PARTS = {"im2col": 10, "conv": 20, "pool": 15, "dense": 10, "relu": 10, "dropout": 10, "softmax": 10, "sgd": 15}
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(PACKAGE_DIR)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PART_LINE = re.compile(r"^(\s*)# \[part (\w+)\] hint: (.*)$")
STUDENT_LINE = re.compile(r"^(\s*).*# STUDENT: (.*)$")


def _begin_after(lines, i):
    """The index of the BEGIN marker that the hint at line ``i`` (plus comment lines) leads to, or None."""
    j = i + 1
    while j < len(lines) and lines[j].strip().startswith("#") and lines[j].strip() != BEGIN:
        j += 1
    return j if j < len(lines) and lines[j].strip() == BEGIN else None


def strip_solutions(text, parts, where="code"):
    """The student version of a source text: regions of ``parts`` replaced, the others unmarked."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        student = STUDENT_LINE.match(line)
        header = PART_LINE.match(line)
        if student:
            out.append(student.group(1) + student.group(2))
        elif header and _begin_after(lines, i) is not None:
            indent, part = header.group(1), header.group(2)
            begin = _begin_after(lines, i)  # the hint may go on over more comment lines
            try:
                end = next(k for k in range(begin + 1, len(lines)) if lines[k].strip() == END)
            except StopIteration:
                raise ValueError(f"{where}: '{BEGIN}' for part {part} has no '{END}'") from None
            if part in parts:
                out += lines[i:begin] + [f"{indent}# YOUR CODE HERE",
                                         f'{indent}raise NotImplementedError("part {part}")']
            else:
                out += lines[begin + 1:end]
            i = end
        elif line.strip() in (BEGIN, END):
            raise ValueError(f"{where}: '{line.strip()}' without a '# [part NAME] hint: ...' line before it")
        else:
            out.append(line)
        i += 1
    return "\n".join(out)


def _convert_notebook(path, dest, parts):
    with open(path) as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            text = strip_solutions("".join(cell["source"]), parts, os.path.basename(path))
            cell["source"] = [line + "\n" for line in text.split("\n")]
            cell["source"][-1] = cell["source"][-1].rstrip("\n")
            cell["outputs"], cell["execution_count"] = [], None
    with open(dest, "w") as f:
        json.dump(nb, f, indent=1)
        f.write("\n")


STUDENT_README = """# tinyvgg: your assignment

This is tinyvgg with some parts left for you to write: {parts}.
Each place to fill in says `raise NotImplementedError("part NAME")` under a hint.

    pip install -e ".[test]"
    pytest tests/test_assignment.py            # all parts
    pytest tests/test_assignment.py -k dense   # one part

The tests compare your code with the definitions (loops) and with numerical
gradients, exactly as the grader does (the grader uses inputs you have not seen).
`python -m tinyvgg.gradcheck` checks every layer once all of them are written.
The lessons in `lessons/` explain each idea. Hand in this whole folder.
"""

STUDENT_TEST = '''"""Your parts, checked as the grader checks them (with other random inputs)."""
import pytest

from tinyvgg.assignment_checks import CHECKS, run_part

PARTS = {parts!r}


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_part(part, seed):
    failed = [f"{{r['check']}}: {{r['reason']}}" for r in run_part(part, seed) if r["reason"]]
    assert not failed, "\\n".join(failed)
'''


def make(out_dir, parts):
    """Write the student version of the package (and marked lessons) into ``out_dir``."""
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise cli.UsageError(f"{out_dir} is not empty; choose a new folder for the student version.")
    package = os.path.join(out_dir, "tinyvgg")
    os.makedirs(package)
    for name in sorted(os.listdir(PACKAGE_DIR)):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE_DIR, name)) as f:
                text = f.read()
            if name != "assignments.py":  # this file only talks about the markers
                text = strip_solutions(text, parts, name)
            with open(os.path.join(package, name), "w") as f:
                f.write(text)
    for name in ("pyproject.toml",):
        if os.path.exists(os.path.join(REPO_DIR, name)):
            shutil.copy(os.path.join(REPO_DIR, name), out_dir)
    os.makedirs(os.path.join(out_dir, "tests"))
    with open(os.path.join(out_dir, "tests", "test_assignment.py"), "w") as f:
        f.write(STUDENT_TEST.format(parts=list(parts)))
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(STUDENT_README.format(parts=", ".join(parts)))
    lessons = os.path.join(REPO_DIR, "lessons")
    converted = 0
    if os.path.isdir(lessons):
        os.makedirs(os.path.join(out_dir, "lessons"))
        for name in sorted(os.listdir(lessons)):
            if name.endswith(".ipynb"):
                _convert_notebook(os.path.join(lessons, name), os.path.join(out_dir, "lessons", name), parts)
                converted += 1
    return converted


def find_package(student_dir):
    """The student's ``tinyvgg`` package folder inside a submission."""
    for candidate in (os.path.join(student_dir, "tinyvgg"), student_dir):
        if all(os.path.isfile(os.path.join(candidate, name)) for name in ("__init__.py", "layers.py")):
            return candidate
    raise cli.UsageError(f"{student_dir} holds no tinyvgg package (a folder tinyvgg/ with layers.py); "
                         "pass the folder the student handed in.")


def grade_part(workdir, part, seed, timeout, checks_file):
    """(points, reasons, details) of one part, run in its own process with a time limit."""
    result_path = os.path.join(workdir, f"result-{part}.json")
    log_path = os.path.join(workdir, f"output-{part}.log")
    env = dict(os.environ, PYTHONPATH=workdir, PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    with open(log_path, "wb") as log:  # whatever the student's code prints goes to a file, not to memory
        try:
            subprocess.run([sys.executable, checks_file, part, str(seed), result_path], cwd=workdir, env=env,
                           stdout=log, stderr=log, stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 0, [f"stopped after {timeout:g} s (an endless loop?)"], []
    try:
        with open(result_path) as f:
            details = json.load(f)
    except (OSError, ValueError):
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - 300))
            tail = f.read().decode(errors="replace").strip().splitlines()[-1:]
        return 0, [f"the checks did not finish ({tail[0] if tail else 'no output'})"], []
    points = sum(r["points"] for r in details)
    reasons = [f"-{r['max'] or PARTS[part]} {r['check']}: {r['reason']}" for r in details if r["reason"]]
    return points, reasons, details


def grade(student_dir, parts=tuple(PARTS), timeout=60.0, seed=None):
    """Grade one submission; returns a report dict (per part: points, max, reasons)."""
    package = find_package(student_dir)
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    report = {"submission": student_dir, "seed": seed, "parts": {}, "total": 0, "max": 0}
    with tempfile.TemporaryDirectory(prefix="tinyvgg-grade-") as workdir:
        shutil.copytree(package, os.path.join(workdir, "tinyvgg"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        checks_file = os.path.join(workdir, "grader_checks.py")
        shutil.copy(os.path.join(PACKAGE_DIR, "assignment_checks.py"), checks_file)  # ours, not the student's
        for part in parts:
            start = time.perf_counter()
            points, reasons, details = grade_part(workdir, part, seed, timeout, checks_file)
            report["parts"][part] = {"points": points, "max": PARTS[part], "reasons": reasons,
                                     "checks": details, "seconds": round(time.perf_counter() - start, 2)}
            report["total"] += points
            report["max"] += PARTS[part]
    return report


def print_report(report):
    print(f"{report['submission']}: {report['total']} / {report['max']} points")
    for part, r in report["parts"].items():
        print(f"  {part:<8} {r['points']:>3} / {r['max']:<3}")
        for reason in r["reasons"]:
            print(f"      {reason}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.assignments", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write a student version")
    mk.add_argument("out_dir")
    mk.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    gr = sub.add_parser("grade", help="grade one or more submissions")
    gr.add_argument("student_dirs", nargs="+", metavar="STUDENT_DIR")
    gr.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    gr.add_argument("--json", help="write the full report of one submission (or a list of them) here")
    gr.add_argument("--csv", help="write one row per submission: points per part and the total")
    gr.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per part")
    args = p.parse_args(argv)
    if args.command == "make":
        notebooks = make(args.out_dir, args.parts)
        print(f"wrote the student version to {args.out_dir} (parts: {', '.join(args.parts)}; "
              f"{notebooks} lesson notebooks)")
        return 0
    reports = []
    for student_dir in args.student_dirs:
        reports.append(grade(student_dir, args.parts, args.timeout))
        print_report(reports[-1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports[0] if len(reports) == 1 else reports, f, indent=2)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["submission", *args.parts, "total", "max"])
            for r in reports:
                writer.writerow([r["submission"], *(r["parts"][k]["points"] for k in args.parts), r["total"], r["max"]])
    return 0


if __name__ == "__main__":
    cli.run(main)

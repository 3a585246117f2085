"""Grading on Gradescope: an autograder zip written to its published specification.

Gradescope runs an autograder in a fresh Ubuntu container per submission. The zip holds, at its root,
``setup.sh`` (run once as root when the autograder is built: it installs what grading needs from the
package index) and ``run_autograder`` (run for each submission: the student's files are in
``/autograder/submission``, and the results go to ``/autograder/results/results.json``). Here:

- the zip carries tinyvgg's own source (``src/tinyvgg``, the grader included: it never reaches the
  students, who only upload) and ``tinyvgg_autograder.json`` (the parts to grade, the time per part);
- ``run_autograder`` runs ``python -m tinyvgg.classroom.gradescope``, which grades the submission with
  the same grader as ``python -m tinyvgg.assignments grade`` and writes ``results.json``: one test per
  part (``name``, ``score``, ``max_score``, ``status``, ``output`` holding the feedback, ``visibility``),
  the total ``score``, ``execution_time``, ``output`` and ``stdout_visibility``;
- the boundary: inside Gradescope's container bubblewrap may be refused (no user namespaces). Then the
  student's code runs without it, and ``output`` says so: the container, one per submission, holding
  nothing but this submission and the autograder, is then the boundary (Gradescope's).

``AUTOGRADER_ROOT`` (default ``/autograder``) moves the whole tree, for a test on any machine.
"""
import json
import os
import time
import zipfile

from ..errors import UsageError
from . import bubblewrap
from .checks import PARTS
from .grader import grade
from .handout import PACKAGE_DIR, REPO_DIR
from .report import shown

CONFIG = "tinyvgg_autograder.json"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu).
set -euo pipefail
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip bubblewrap > /dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet "numpy>=1.23" "pillow>=9" "matplotlib>=3.5" "tqdm>=4.60" "threadpoolctl>=3"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade /autograder/submission into /autograder/results/results.json.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
cd "$ROOT/source"
PYTHONPATH="$ROOT/source/src" exec "$PYTHON" -m tinyvgg.classroom.gradescope
"""


def write_zip(out, parts, timeout=60.0):
    """Write the autograder zip for ``parts`` to ``out``; returns the number of files in it."""
    entries = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text, mode in (("setup.sh", SETUP_SH, 0o755), ("run_autograder", RUN_AUTOGRADER, 0o755),
                                 (CONFIG, json.dumps({"parts": list(parts), "timeout": timeout}, indent=1), 0o644)):
            info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
            info.external_attr = (0o100000 | mode) << 16  # a regular file with its mode, kept by unzip
            archive.writestr(info, text)
            entries += 1
        for folder, subfolders, files in os.walk(PACKAGE_DIR):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    archive.write(path, os.path.join("src", os.path.relpath(path, os.path.dirname(PACKAGE_DIR))))
                    entries += 1
        if os.path.exists(os.path.join(REPO_DIR, "pyproject.toml")):
            archive.write(os.path.join(REPO_DIR, "pyproject.toml"), "pyproject.toml")
            entries += 1
    return entries


def _submitted_folder(submission):
    """The folder of the upload that holds the package: the upload itself, or its one top folder (a zip of
    the handout folder unpacks as ``submission/handout/src/tinyvgg``)."""
    for candidate in [submission] + sorted(os.path.join(submission, d) for d in os.listdir(submission)
                                           if os.path.isdir(os.path.join(submission, d))
                                           and not os.path.islink(os.path.join(submission, d))):
        if any(os.path.isdir(os.path.join(candidate, *inside)) for inside in (("src", "tinyvgg"), ("tinyvgg",))):
            return candidate
    return submission


def results(report, mode, problem, seconds):
    """``results.json``'s dict for a grader ``report``."""
    tests = []
    for part, r in report["parts"].items():
        lines = [f"{c['check']}: {c['points']} / {c['max']}" + (f" ({c['reason']})" if c["reason"] else "")
                 for c in r.get("checks", [])] or [shown(reason) for reason in r["reasons"]]
        tests.append({"name": f"part {part}", "score": float(r["points"]), "max_score": float(r["max"]),
                      "status": "passed" if r["points"] == r["max"] else "failed",
                      "output": "\n".join(shown(line) for line in lines), "visibility": "visible"})
    boundary = ("bubblewrap sandbox, inside Gradescope's container" if mode == "bubblewrap" else
                f"Gradescope's container, one per submission (bubblewrap cannot run in it: {problem})")
    output = f"tinyvgg grader; the boundary around your code: {boundary}."
    if report.get("error"):
        output += f"\nNot graded: {shown(report['error'])}"
    return {"score": float(report["total"]), "execution_time": int(round(seconds)), "output": output,
            "stdout_visibility": "visible", "tests": tests}


def run(root=None):
    """Grade ``ROOT/submission`` as the zip's ``tinyvgg_autograder.json`` says; write ``ROOT/results/results.json``."""
    root = root or os.environ.get("AUTOGRADER_ROOT", "/autograder")
    with open(os.path.join(root, "source", CONFIG), encoding="utf-8") as f:
        config = json.load(f)
    parts = [p for p in config["parts"] if p in PARTS]
    problem = bubblewrap.works()
    mode = "bubblewrap" if problem is None else "unsafe"
    start = time.perf_counter()
    try:
        report = grade(_submitted_folder(os.path.join(root, "submission")), parts, timeout=float(config["timeout"]),
                       unsafe_no_sandbox=mode == "unsafe")
    except (UsageError, OSError) as err:   # no package in the upload, a link in it...: every part 0, and why
        report = {"total": 0, "error": str(err), "parts": {p: {"points": 0, "max": PARTS[p], "reasons": [str(err)],
                                                               "checks": []} for p in parts}}
    os.makedirs(os.path.join(root, "results"), exist_ok=True)
    data = results(report, mode, problem, time.perf_counter() - start)
    with open(os.path.join(root, "results", "results.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return data


if __name__ == "__main__":
    run()

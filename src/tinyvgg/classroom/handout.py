"""The student version of tinyvgg: the parts students write become blanks under their hints.

The reference code marks the parts students write with nbgrader's solution
markers, preceded by a line naming the part and giving a hint::

    # [part dense] hint: out = x @ W + b; keep x for backward when training
    ### BEGIN SOLUTION
    ...the reference implementation...
    ### END SOLUTION

:func:`make` writes a student copy: every marked region of the chosen parts becomes
``raise NotImplementedError`` under the kept hint, the other parts keep their
solution (without the markers), and a line ending in ``# STUDENT: <code>`` becomes
``<code>`` (the student version builds the reference kernels by default). The
handout is the package without this ``classroom`` folder (the teacher's side: the
grader, its checks and loop oracles); it is an installable package with tests on
fixed inputs (their answers stored beside them), a README that lists every blank,
and the lessons with their marked cells blanked.
"""
import io
import json
import os
import re
import shutil

import numpy as np

from ..errors import UsageError
from . import checks
from .checks import PARTS

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # src/tinyvgg
SOURCE_DIR = os.path.dirname(PACKAGE_DIR)                                # src
REPO_DIR = os.path.dirname(SOURCE_DIR)                                   # the clone
CLASSROOM = "classroom"  # the teacher's side of the package: never in a student version
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PART_LINE = re.compile(r"^(\s*)# \[part (\w+)\] hint: (.*)$")
STUDENT_LINE = re.compile(r"^(\s*).*# STUDENT: (.*)$")
#: Modules whose blanks are optional: the fast kernels, which the student version leaves unused.
OPTIONAL_FILES = {"fastconv.py"}  # the fast kernels


# ---------------------------------------------------------------- the student version

def _begin_after(lines, i):
    """The index of the BEGIN marker that the hint at line ``i`` (plus comment lines) leads to, or None."""
    j = i + 1
    while j < len(lines) and lines[j].strip().startswith("#") and lines[j].strip() != BEGIN:
        j += 1
    return j if j < len(lines) and lines[j].strip() == BEGIN else None


def strip_solutions(text, parts, where="code", blanks=None):
    """The student version of a source text: regions of ``parts`` replaced, the others unmarked.

    ``blanks``, a list, receives ``(part, hint, line number)`` for every region replaced.
    """
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
                if blanks is not None:
                    hint = " ".join([header.group(3)] + [line.strip().lstrip("#").strip() for line in lines[i + 1:begin]])
                    blanks.append((part, hint, len(out) + 1))  # the whole hint, over all its comment lines
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


#: The part name of the lessons' exercise answers: removed from every student version.
EXERCISE = "exercise"


def _convert_notebook(path, dest, parts, blanks=None):
    """Write the student version of a lesson; ``blanks`` (a list) receives ``(part, hint, code cell number)``."""
    with open(path) as f:
        nb = json.load(f)
    code_cells = 0
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            code_cells += 1
            found = []
            text = strip_solutions("".join(cell["source"]), set(parts) | {EXERCISE}, os.path.basename(path), found)
            if blanks is not None:
                blanks += [(part, hint, code_cells) for part, hint, _ in found]
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

The tests run your code on fixed inputs and compare it with the answers the
reference code gives (stored in `tests/expected.npz`); they always test the code
in this folder, whatever else is installed. The grader runs the same kinds of
checks on inputs you have not seen. Its convolution checks lend your `Conv2D`
a correct im2col, so each part is judged on its own; these tests use yours, so
write im2col first. `python -m tinyvgg.gradcheck` checks every layer once all
of them are written. The lessons in `lessons/` explain each idea.
Hand in this whole folder.

## Every blank

Graded (points out of {total}):

{graded}

In the lessons (each graded part you write in `src/tinyvgg` is written once more where a lesson builds it
up step by step, and each lesson ends with an exercise; both are checked in the lesson, not graded):

{notebooks}

Optional, not graded: the fast classes of `fastconv.py` (`FastConv2D`, `FastMaxPool2D`)
compute the same things faster. (`SyncBatchNorm2D` in `training/sync_bn.py`, which spreads batch
normalization over several processes in lesson 16, comes whole: it builds on your batch
normalization. So does `ImageCentering` in `layers.py`, the first layer of the network
`python -m tinyvgg.train` builds, which lesson 13 explains.) This version builds the reference layers you write
(`vgg(kernels="reference")` is its default). Fill the fast kernels in once your parts
pass, build a model with `kernels="fast"`, and check that nothing changes:

{optional}
"""

STUDENT_CONFTEST = '''"""Make sure the tests import the tinyvgg of this folder, never another installed copy."""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
'''

STUDENT_TEST = '''"""Your parts on fixed inputs, against the answers of the reference code (stored in expected.npz)."""
import json
import pathlib

import numpy as np
import pytest

import tinyvgg
from part_runner import compare, run_case

HERE = pathlib.Path(__file__).resolve().parent
assert pathlib.Path(tinyvgg.__file__).resolve().parent == HERE.parent / "src" / "tinyvgg", (
    f"these tests must test the tinyvgg of {{HERE.parent}}, but imported {{tinyvgg.__file__}}; "
    "run pytest from the assignment folder")
EXPECTED = np.load(HERE / "expected.npz", allow_pickle=False)
CHECKS = json.loads(str(EXPECTED["checks"]))


def arrays(prefix):
    return {{name[len(prefix):]: EXPECTED[name] for name in EXPECTED.files if name.startswith(prefix)}}


@pytest.mark.parametrize("check", CHECKS, ids=[c["id"] for c in CHECKS])
def test_part(check):
    inputs = arrays(check["id"] + "/input/")
    outputs, error = run_case(check["recipe"], inputs, check["kwargs"])
    assert error is None, f"{{check['title']}}: {{error}}"
    reason = compare(check["kind"], outputs, arrays(check["id"] + "/expected/"), inputs, check["kwargs"],
                     check["tol"])
    assert reason is None, f"{{check['title']}}: {{reason}}"
'''


def _expected_file(parts, seeds=(0, 1)):
    """The student tests' fixed inputs and reference answers, as one .npz (bytes) without pickle."""
    arrays, entries = {}, []
    for part in parts:
        for seed in seeds:
            task = checks.make_task(part, seed)
            for n, check in enumerate(task.checks):
                case = task.cases[check["case"]]
                check_id = f"{part}-{seed}-{n}"
                entries.append({"id": check_id, "part": part, "title": check["title"], "recipe": case["recipe"],
                               "kwargs": case["kwargs"], "kind": check["kind"], "tol": check["tol"]})
                arrays.update({f"{check_id}/input/{k}": v for k, v in case["arrays"].items()})
                arrays.update({f"{check_id}/expected/{k}": v for k, v in check["expected"].items()})
    buffer = io.BytesIO()
    np.savez(buffer, checks=np.array(json.dumps(entries)), **arrays)
    return buffer.getvalue()



def student_modules():
    """``(path inside the package, source file)`` of every module a student version holds: the whole
    package but its ``classroom`` folder (the teacher's side), in a stable order."""
    found = []
    for folder, subfolders, files in os.walk(PACKAGE_DIR):
        subfolders[:] = sorted(d for d in subfolders if d not in (CLASSROOM, "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found.append((os.path.relpath(path, PACKAGE_DIR).replace(os.sep, "/"), path))
    return found


def make(out_dir, parts):
    """Write the student version of the package (and marked lessons) into ``out_dir``; returns the
    number of lesson notebooks converted. The copy has the repository's layout: ``src/tinyvgg``.
    A folder that cannot be written gets one sentence, and what this call made is removed again."""
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise UsageError(f"{out_dir} already exists and is not an empty folder; choose a new folder for the "
                         "student version.")
    made = not os.path.exists(out_dir)
    try:
        return _write_student_version(out_dir, parts)
    except OSError as err:
        if made:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise UsageError(f"cannot write the student version to {out_dir} ({err.strerror}); choose a folder "
                         "you can write.") from None


def _write_student_version(out_dir, parts):
    package = os.path.join(out_dir, "src", "tinyvgg")
    graded, optional = [], []
    for name, source in student_modules():
        with open(source) as f:
            text = f.read()
        blanks = []
        text = strip_solutions(text, parts, name, blanks)
        for part, hint, line in blanks:
            entry = f"- `src/tinyvgg/{name}`, line {line} (part {part}): {hint}"
            (optional if os.path.basename(name) in OPTIONAL_FILES else graded).append(entry)
        target = os.path.join(package, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(text)
    if os.path.exists(os.path.join(REPO_DIR, "pyproject.toml")):
        shutil.copy(os.path.join(REPO_DIR, "pyproject.toml"), out_dir)
    tests = os.path.join(out_dir, "tests")
    os.makedirs(tests)
    for name, text in (("conftest.py", STUDENT_CONFTEST), ("test_assignment.py", STUDENT_TEST.format())):
        with open(os.path.join(tests, name), "w") as f:
            f.write(text)
    shutil.copyfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py"),
                    os.path.join(tests, "part_runner.py"))  # how the tests call each part (no answers in it)
    with open(os.path.join(tests, "expected.npz"), "wb") as f:
        f.write(_expected_file(parts))
    lessons = os.path.join(REPO_DIR, "lessons")
    converted, notebook_blanks = 0, []
    if os.path.isdir(lessons):
        os.makedirs(os.path.join(out_dir, "lessons"))
        for name in sorted(os.listdir(lessons)):
            if name.endswith(".ipynb"):
                found = []
                _convert_notebook(os.path.join(lessons, name), os.path.join(out_dir, "lessons", name), parts, found)
                notebook_blanks += [{"lesson": f"lessons/{name}", "code_cell": cell, "part": part, "hint": hint}
                                    for part, hint, cell in found]
                converted += 1
    total = sum(PARTS[p] for p in parts)
    notebooks = [f"- `{b['lesson']}`, code cell {b['code_cell']} "
                 f"({'an exercise' if b['part'] == EXERCISE else 'part ' + b['part']}): {b['hint']}"
                 for b in notebook_blanks]
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(STUDENT_README.format(parts=", ".join(parts), total=total,
                                      graded="\n".join(graded) or "- none",
                                      notebooks="\n".join(notebooks) or "- none",
                                      optional="\n".join(optional) or "- none"))
    write_manifest(out_dir, parts, graded, notebook_blanks)
    return converted


#: The file ``make`` writes beside the student version's README: what was handed out, for ``grade``.
MANIFEST = "handout.json"


def write_manifest(out_dir, parts, blanks, notebook_blanks):
    """``handout.json``: the parts handed out with their points, and every blank, in the code and in the lessons."""
    manifest = {"format": "tinyvgg-handout", "version": 1, "parts": {p: PARTS[p] for p in parts},
                "total": sum(PARTS[p] for p in parts), "blanks": blanks, "notebook_blanks": notebook_blanks}
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def read_manifest(path):
    """The parts (a list, in the order handed out) that the ``handout.json`` at ``path`` (a file, or the folder
    holding it) lists, or None where there is none; a UsageError for one that is not a handout's."""
    if os.path.isdir(path):
        path = os.path.join(path, MANIFEST)
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    try:
        if os.path.getsize(path) > 1 << 20:
            raise ValueError("larger than any handout's")
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        parts = list(manifest["parts"])
        if manifest.get("format") != "tinyvgg-handout" or not parts or not set(parts) <= set(PARTS):
            raise ValueError("not a list of tinyvgg's parts")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        raise UsageError(f"{path} is not a handout.json written by python -m tinyvgg.assignments make ({err}); "
                         "pass --parts, or --handout with the folder make wrote.") from None
    return parts

"""CI: the teacher's guide states the numbers the lessons really print.

Every number a teacher will ask about is noted by its lesson with ``exercises.record("NN.name", value)``,
and the guide (``lessons/teacher/NN.md``) gives, in a table row that starts with that name, the lowest and
the highest value any run gives (from the seed and thread sweeps)::

    | `09.best_val_accuracy` | 0.85 | 0.99 | the kept model's validation accuracy |

CI runs the lessons with ``TINYVGG_LESSON_RECORD=FILE`` (each recorded value is appended to FILE as a JSON
line), then::

    python .ci/teacher_guide.py FILE      # every recorded value inside its guide's range, every row recorded
    python .ci/teacher_guide.py           # the guide and the lessons name the same numbers (no run needed)

The second form is also ``tests/test_teacher_guide.py``.
"""
import glob
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r"^\|\s*`(\d\d\.[A-Za-z0-9_]+)`\s*\|\s*([-+0-9.e]+)\s*\|\s*([-+0-9.e]+)\s*\|", re.MULTILINE)
RECORD_CALL = re.compile(r"""record\(\s*\\?["'](\d\d\.[A-Za-z0-9_]+)\\?["']""")


def guide_ranges(repo=REPO):
    """``{name: (lowest, highest)}`` from every table row of ``lessons/teacher/NN*.md`` (not its README)."""
    ranges = {}
    for path in sorted(glob.glob(os.path.join(repo, "lessons", "teacher", "[0-9][0-9]*.md"))):
        with open(path) as f:
            for name, low, high in ROW.findall(f.read()):
                if name in ranges:
                    raise SystemExit(f"{os.path.relpath(path, repo)}: `{name}` has two rows in the guide")
                ranges[name] = (float(low), float(high))
    return ranges


def recorded_names(repo=REPO):
    """The names every lesson notebook passes to ``record`` (read from the notebooks' sources)."""
    names = set()
    for path in sorted(glob.glob(os.path.join(repo, "lessons", "*.ipynb"))):
        with open(path) as f:
            cells = json.load(f)["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                names.update(RECORD_CALL.findall("".join(cell["source"])))
    return names


def mismatched_names(repo=REPO):
    """Sentences naming each number recorded by a lesson but absent from the guide, and the reverse."""
    ranges, names = guide_ranges(repo), recorded_names(repo)
    return ([f"`{n}` is recorded by a lesson but has no row in lessons/teacher/" for n in sorted(names - set(ranges))]
            + [f"`{n}` has a row in lessons/teacher/ but no lesson records it" for n in sorted(set(ranges) - names)])


def out_of_range(record_file, repo=REPO):
    """Sentences naming each recorded value outside its guide's range, and each guide row no run recorded."""
    ranges, seen, problems = guide_ranges(repo), set(), []
    with open(record_file) as f:
        for line in f:
            entry = json.loads(line)
            name, value = entry["name"], entry["value"]
            seen.add(name)
            if name not in ranges:
                problems.append(f"`{name}` = {value:.6g} was recorded but the guide has no row for it")
                continue
            low, high = ranges[name]
            if not low <= value <= high:
                problems.append(f"`{name}` = {value:.6g} is outside the guide's range {low:g} to {high:g}")
    problems += [f"`{name}` has a row in the guide but the run recorded no value" for name in sorted(set(ranges) - seen)]
    return problems


def main(argv):
    problems = mismatched_names()
    if argv:
        problems += out_of_range(argv[0])
    for problem in problems:
        print(problem)
    ranges = guide_ranges()
    print(f"teacher's guide: {len(ranges)} numbers, {len(problems)} problems"
          + (f" (values from {argv[0]})" if argv else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

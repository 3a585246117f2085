"""The teacher's guide (lessons/teacher/) and the lessons name the same printed numbers, and its check works.

CI compares the ranges with the values of a real run (``.ci/teacher_guide.py RECORDS`` after the lessons);
here, without running a lesson: the names agree, and the range check catches what it must.
"""
import importlib.util
import json
import pathlib

from tinyvgg import exercises

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("teacher_guide", REPO / ".ci" / "teacher_guide.py")
teacher_guide = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(teacher_guide)


def test_every_recorded_number_has_a_row_and_every_row_is_recorded():
    assert teacher_guide.mismatched_names() == []


def test_every_row_gives_a_range_lowest_first():
    for name, (low, high) in teacher_guide.guide_ranges().items():
        assert low <= high, f"{name}: {low} > {high}"


def test_record_appends_one_json_line_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(exercises.RECORD_VARIABLE, raising=False)
    assert exercises.record("09.x", 0.5) == 0.5  # nothing written anywhere
    path = tmp_path / "records.jsonl"
    monkeypatch.setenv(exercises.RECORD_VARIABLE, str(path))
    exercises.record("09.x", 0.5)
    exercises.record("09.y", 3)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"name": "09.x", "value": 0.5}, {"name": "09.y", "value": 3.0}]


def test_the_range_check_names_a_value_outside_an_unknown_name_and_a_missing_row(tmp_path):
    guide = tmp_path / "lessons" / "teacher"
    guide.mkdir(parents=True)
    (guide / "09.md").write_text("| number | lowest | highest | what |\n|---|---|---|---|\n"
                                 "| `09.acc` | 0.85 | 0.99 | accuracy |\n| `09.loss` | 0.1 | 0.5 | loss |\n")
    records = tmp_path / "records.jsonl"
    records.write_text('{"name": "09.acc", "value": 0.7}\n{"name": "09.new", "value": 1.0}\n')
    problems = teacher_guide.out_of_range(records, repo=tmp_path)
    assert len(problems) == 3
    assert "`09.acc` = 0.7 is outside the guide's range 0.85 to 0.99" in problems[0]
    assert "`09.new`" in problems[1] and "no row" in problems[1]
    assert "`09.loss`" in problems[2] and "recorded no value" in problems[2]
    records.write_text('{"name": "09.acc", "value": 0.9}\n{"name": "09.loss", "value": 0.1}\n')
    assert teacher_guide.out_of_range(records, repo=tmp_path) == []


def test_the_student_version_carries_no_teachers_guide(tmp_path):
    from tinyvgg.classroom import handout
    handout.make(str(tmp_path / "student"), ["relu"])
    assert not list((tmp_path / "student").rglob("teacher*")), "the answers would reach the students"

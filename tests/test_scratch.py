"""The grader's scratch removal: whatever a submission left, and a folder refilled while it is emptied
(a sandboxed process still dying after bwrap itself was killed: seen once in CI)."""
import errno
import os

import pytest

from tinyvgg.classroom import scratch


def part_folder(tmp_path):
    answer = tmp_path / "part" / "answer"
    answer.mkdir(parents=True)
    (answer / "answer.npz").write_bytes(b"0" * 100)
    return tmp_path / "part"


def refill_before_rmdir(monkeypatch, times):
    """Make the next ``times`` removals of a folder named answer find a new file in it first."""
    real_rmdir, left = os.rmdir, [times]

    def rmdir(path, *, dir_fd=None):
        if path == "answer" and left[0] > 0:
            left[0] -= 1
            fd = os.open(os.path.join(path, f"late{left[0]}"), os.O_CREAT | os.O_WRONLY, dir_fd=dir_fd)
            os.close(fd)
        return real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", rmdir)


def test_a_folder_refilled_just_before_its_removal_is_emptied_again(tmp_path, monkeypatch):
    once = part_folder(tmp_path / "a")
    refill_before_rmdir(monkeypatch, 1)
    with pytest.raises(OSError) as raised:              # one pass alone meets the race...
        scratch._remove_tree_once(str(once))
    assert raised.value.errno == errno.ENOTEMPTY
    again = part_folder(tmp_path / "b")
    refill_before_rmdir(monkeypatch, 3)
    scratch.remove_tree(str(again))                      # ...remove_tree empties it again
    assert not again.exists()


def test_a_folder_that_never_stops_refilling_is_given_up_on(tmp_path, monkeypatch):
    folder = part_folder(tmp_path)
    monkeypatch.setattr(scratch, "REFILL_PATIENCE_S", 0.2)
    refill_before_rmdir(monkeypatch, 10**6)
    with pytest.raises(OSError) as raised:
        scratch.remove_tree(str(folder))
    assert raised.value.errno == errno.ENOTEMPTY


def test_deep_and_unreadable_trees_are_removed(tmp_path):
    deep = tmp_path / "deep"
    folder = deep
    for _ in range(300):
        folder = folder / "d"
    folder.mkdir(parents=True)
    (folder / "f").write_text("x")
    os.chmod(deep / "d", 0)
    scratch.remove_tree(str(deep))
    assert not deep.exists()

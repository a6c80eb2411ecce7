"""Nothing half-written: atomic files and directories."""

from __future__ import annotations

import pytest

from etl.atomic import atomic_dir, atomic_path, write_text


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_keeps_previous_on_failure_and_swaps_on_success(tmp_path):
    target = tmp_path / "release"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "a").write_text("2")
            raise RuntimeError("killed")
    assert (target / "a").read_text() == "1"
    assert not (tmp_path / "release.partial").exists()
    with atomic_dir(target) as d:
        (d / "a").write_text("3")
    assert (target / "a").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]


def test_swap_killed_between_renames_is_recovered(tmp_path):
    target = tmp_path / "release"
    old = tmp_path / "release.old"
    old.mkdir()
    (old / "a").write_text("previous")
    # state after a kill between `target -> .old` and `partial -> target`
    with pytest.raises(RuntimeError):
        with atomic_dir(target):
            assert (target / "a").read_text() == "previous"  # recovered before the new build starts
            raise RuntimeError("fails")
    assert (target / "a").read_text() == "previous"
    assert not old.exists()


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from etl.atomic import FILE_MODE

    target = write_text(tmp_path / "shared.txt", "x")
    assert stat.S_IMODE(os.stat(target).st_mode) == FILE_MODE
    assert FILE_MODE & 0o044  # readable by group/others under the usual umask

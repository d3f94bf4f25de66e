"""shared.files.atomic_write: new files only (or replaced whole with overwrite), never through a symlink."""

from __future__ import annotations

import os

import pytest

from shared.errors import OutputFileError
from shared.files import atomic_write


def test_creates_a_new_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.csv"
    with atomic_write(target) as handle:
        handle.write("a,b\r\n")
    assert target.read_bytes() == b"a,b\r\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_an_existing_name_is_refused_and_kept(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("precious")
    with pytest.raises(OutputFileError, match=r"a file with that name already exists \(use --force"):
        with atomic_write(target) as handle:
            handle.write("new")
    assert target.read_text() == "precious"


def test_a_file_appearing_meanwhile_is_not_clobbered(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(OutputFileError, match="already exists"):
        with atomic_write(target) as handle:
            handle.write("mine")
            target.write_text("theirs")  # created by someone else while we were writing
    assert target.read_text() == "theirs"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_overwrite_replaces_a_symlink_not_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("do not touch")
    target = tmp_path / "out.csv"
    target.symlink_to(victim)
    with pytest.raises(OutputFileError, match="a symlink with that name already exists"):
        with atomic_write(target) as handle:
            handle.write("x")
    with atomic_write(target, overwrite=True) as handle:
        handle.write("x")
    assert victim.read_text() == "do not touch"
    assert not target.is_symlink() and target.read_text() == "x"


def test_failure_inside_the_block_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, overwrite=True) as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.csv"]


def test_missing_folder_and_no_permission(tmp_path):
    with pytest.raises(OutputFileError, match="the folder does not exist"):
        with atomic_write(tmp_path / "nope" / "out.csv"):
            pass
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(OutputFileError, match="a part of the path is not a folder"):
        with atomic_write(plain / "out.csv"):
            pass
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputFileError, match="permission denied"):
            with atomic_write(locked / "out.csv"):
                pass

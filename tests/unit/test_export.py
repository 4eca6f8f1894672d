"""Atomic writers and the staged output folder."""

import errno
import os

import pytest

from usm_geo.errors import OutputError
from usm_geo.io import staged_folder, write_json, write_text


def test_write_is_atomic_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})  # not serialisable: fails mid-way
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary left behind


def test_json_is_byte_stable(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": [1.5, "ü"]})
    write_json(tmp_path / "b.json", {"a": [1.5, "ü"], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_staged_folder_swaps_whole_and_keeps_old_on_failure(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out) as stage:
        (stage / "run.json").write_text("{}")
        (stage / "one.csv").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == ["one.csv", "run.json"]
    with pytest.raises(RuntimeError):
        with staged_folder(out) as stage:
            (stage / "run.json").write_text("{}")
            (stage / "two.csv").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == ["one.csv", "run.json"]  # previous run intact
    with staged_folder(out) as stage:
        (stage / "run.json").write_text("{}")
        (stage / "two.csv").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "two.csv"]  # never a mix of runs
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporaries left


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "Documents"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(OutputError, match="did not write"):
        with staged_folder(out):
            pass
    assert (out / "thesis.docx").read_text() == "precious"


@pytest.mark.parametrize("err, message", [(errno.EACCES, "permission denied"), (errno.EROFS, "permission denied"), (errno.ENOSPC, "disk is full")])
def test_os_errors_become_clear_errors(tmp_path, monkeypatch, err, message):
    # root ignores permissions, so the failure is injected where the OS would raise it
    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr("usm_geo.io.tempfile.mkdtemp", fail)
    with pytest.raises(OutputError, match=message):
        with staged_folder(tmp_path / "out"):
            pass
    assert not (tmp_path / "out").exists()

"""facetwin.outputs: atomic replacement, failures keep the earlier file, strict JSON, names, cleanup."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faulty_writes import break_writer
from facetwin import outputs
from facetwin.errors import FacetwinError
from facetwin.outputs import (OutputError, atomic_write, check_target, clean_temporaries, dumps_json, ensure_dir,
                              unique_stems, write_image, write_json, write_text)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if outputs.TMP_MARK in p.name)


def test_atomic_write_replaces_and_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "first\n")
    assert target.read_text() == "first\n"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("half of the second")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "first\n" and _leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, "w") as fh:
            fh.write("x")
            raise KeyboardInterrupt
    assert target.read_text() == "first\n" and _leftovers(tmp_path) == []
    write_text(target, "second\n")
    assert target.read_text() == "second\n"


def test_full_disk_is_one_output_error_naming_the_path(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    write_json(target, {"n": 1})
    break_writer(monkeypatch)  # every write through facetwin.outputs fails like a full disk
    with pytest.raises(OutputError, match=r"result\.json: no space left on device") as info:
        write_json(target, {"n": 2})
    assert isinstance(info.value, FacetwinError)
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"n": 1} and _leftovers(tmp_path) == []


def test_paths_that_cannot_be_written(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        ensure_dir(afile)
    with pytest.raises(OutputError, match="not a folder"):
        write_text(afile / "inside.txt", "y")
    with pytest.raises(OutputError, match="it is a folder"):
        check_target(tmp_path)
    with pytest.raises(OutputError, match="is a directory"):
        write_text(tmp_path, "z")  # renaming onto a folder
    assert afile.read_text() == "x"
    if os.geteuid() != 0:  # root ignores permissions
        ro = ensure_dir(tmp_path / "ro")
        ro.chmod(0o500)
        try:
            with pytest.raises(OutputError, match="permission denied"):
                write_text(ro / "a.txt", "w")
            with pytest.raises(OutputError, match="permission denied"):
                check_target(ro / "a.txt")
        finally:
            ro.chmod(0o700)
    assert check_target(tmp_path / "new" / "deeper" / "a.png") == tmp_path / "new" / "deeper" / "a.png"


def test_strict_json_has_no_nan_tokens():
    text = dumps_json({"a": float("nan"), "b": [1.5, float("inf")], "c": np.float32(2.5), "d": np.arange(3), "p": Path("x")})
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": 2.5, "d": [0, 1, 2], "p": "x"}
    assert "NaN" not in text and "Infinity" not in text


def test_write_image_round_trips_and_checks_its_input(tmp_path):
    img = (np.arange(12 * 10 * 3) % 251).astype(np.uint8).reshape(12, 10, 3)
    path = write_image(tmp_path / "x.png", img)
    assert np.array_equal(np.asarray(Image.open(path)), img)
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "y.png", img.astype(np.float32))
    with pytest.raises(ValueError, match=r"\.png or \.jpg"):
        write_image(tmp_path / "y.gif", img)


def test_unique_stems_never_collide():
    paths = [Path("d/face.jpg"), Path("d/face.png"), Path("d/other.jpg"), Path("e/face.jpg")]
    names = unique_stems(paths)
    assert names[Path("d/other.jpg")] == "other"
    assert names[Path("d/face.jpg")] == "face_jpg" and names[Path("d/face.png")] == "face_png"
    assert names[Path("e/face.jpg")] == "face_jpg_2"
    assert len(set(names.values())) == len(paths)


def test_clean_temporaries_removes_only_dead_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".step.safetensors{outputs.TMP_MARK}{dead_pid}-0001"
    live = tmp_path / f".other.png{outputs.TMP_MARK}{os.getppid()}-0002"  # the parent is alive
    keep = tmp_path / "result.png"
    for p in (stale, live, keep):
        p.write_bytes(b"123")
    assert clean_temporaries(tmp_path) == 1
    assert not stale.exists() and live.exists() and keep.exists()


def test_human_output_shortens_long_number_lists_and_lists_one_entry_a_line(capsys):
    """A person's β (100 numbers) prints as its first values and its length, each output on its
    own line; --json keeps every value."""
    from facetwin.cli.main import print_result

    beta = [0.123456 * i for i in range(100)]
    result = {"person": {"person": "anna", "beta": beta}, "outputs": [{"name": "a", "face": 0}, {"name": "b", "face": 1}],
              "failures": [], "size": [3, 4]}
    print_result(result, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["person:", "  person: anna",
                     "  beta: [0, 0.1235, 0.2469, 0.3704, ...] (100 values; all of them with --json)",
                     "outputs:", "  - name a, face 0", "  - name b, face 1", "failures: []", "size: [3, 4]"]
    print_result(result, as_json=True)
    assert json.loads(capsys.readouterr().out)["person"]["beta"] == beta

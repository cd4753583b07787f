"""local/package.py (`make package`) builds the zips terraform/functions.tf's archive_file builds.

Same layout: the function folder's `**/*.py` and `requirements.txt` at the root, `common/**/*.py`
under `common/`, nothing else (no __pycache__, no docs, no data files). Deterministic bytes.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from local import package

pytestmark = [pytest.mark.unit, pytest.mark.terraform]

ROOT = Path(__file__).resolve().parents[2]


def make_tree(root: Path) -> None:
    files = {
        "functions/alpha/main.py": "def alpha(request):\n    return 'ok'\n",
        "functions/alpha/requirements.txt": "functions-framework==3.10.2\n",
        "functions/alpha/helpers/extra.py": "X = 1\n",
        "functions/alpha/README.md": "not shipped\n",
        "functions/alpha/__pycache__/main.cpython-311.pyc": "\x00",
        "functions/beta/main.py": "def beta(request):\n    return 'ok'\n",
        "functions/not_a_function/notes.txt": "no main.py here\n",
        "common/__init__.py": "",
        "common/handlers/__init__.py": "",
        "common/handlers/alpha.py": "def handle(request, container):\n    return 'ok'\n",
        "common/data.json": "{}",
        "common/__pycache__/x.cpython-311.pyc": "\x00",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_layout_matches_archive_file(tmp_path):
    make_tree(tmp_path)
    assert package.function_names(tmp_path) == ["alpha", "beta"]
    out = tmp_path / "build"
    zip_path = package.build_zip("alpha", out, tmp_path)
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert set(names) == {
            "main.py",
            "requirements.txt",
            "helpers/extra.py",
            "common/__init__.py",
            "common/handlers/__init__.py",
            "common/handlers/alpha.py",
        }
        assert archive.read("common/handlers/alpha.py") == (tmp_path / "common/handlers/alpha.py").read_bytes()
        assert archive.testzip() is None
    with zipfile.ZipFile(package.build_zip("beta", out, tmp_path)) as archive:
        assert "requirements.txt" not in archive.namelist()  # none in the folder, none in the zip
        assert "main.py" in archive.namelist()


def test_zips_are_deterministic(tmp_path):
    make_tree(tmp_path)
    first = package.md5(package.build_zip("alpha", tmp_path / "a", tmp_path))
    (tmp_path / "functions/alpha/main.py").touch()  # a new mtime changes nothing
    second = package.md5(package.build_zip("alpha", tmp_path / "b", tmp_path))
    assert first == second
    (tmp_path / "common/handlers/alpha.py").write_text("def handle(request, container):\n    return 'changed'\n")
    assert package.md5(package.build_zip("alpha", tmp_path / "c", tmp_path)) != first


def test_build_all_and_cli_errors(tmp_path, capsys):
    make_tree(tmp_path)
    built = package.build_all(tmp_path / "out", tmp_path)
    assert [p.name for p in built] == ["alpha.zip", "beta.zip"]
    assert package.main(["no_such_function", "--out", str(tmp_path / "x")]) == 1
    assert "unknown function" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        package.build_all(empty / "out", empty)


def test_the_repository_zips_hold_every_common_module(tmp_path):
    names = package.function_names(ROOT)
    assert names, "no functions/<name>/main.py in the repository yet"
    common = sorted("common/" + p.relative_to(ROOT / "common").as_posix() for p in (ROOT / "common").rglob("*.py"))
    for name in names:
        with zipfile.ZipFile(package.build_zip(name, tmp_path, ROOT)) as archive:
            members = set(archive.namelist())
        assert {"main.py", "requirements.txt"} <= members, name
        assert set(common) <= members, (name, sorted(set(common) - members))
        assert not any("__pycache__" in m or m.endswith(".pyc") for m in members), name

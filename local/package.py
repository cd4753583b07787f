"""Build the function zips Terraform uploads (`make package`).

Each functions/<name>/ folder with a main.py becomes terraform/build/<name>.zip holding the same
files as terraform/functions.tf's archive_file: the folder's `**/*.py` and `requirements.txt` at
the zip root, plus `common/**/*.py` under `common/`. The zips are deterministic (sorted entries,
fixed timestamps and modes), so the same tree always gives the same bytes and the same md5.

    python -m local.package [--out DIR] [NAME ...]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "terraform" / "build"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644 << 16


def function_names(root: Path = REPO_ROOT) -> list[str]:
    """Every functions/<name> folder that holds a main.py, sorted."""
    base = root / "functions"
    if not base.is_dir():
        return []
    return sorted(p.parent.name for p in base.glob("*/main.py"))


def _python_files(folder: Path) -> list[Path]:
    # Terraform's fileset(dir, "**/*.py"): files only, at any depth, the root included.
    return sorted(p for p in folder.rglob("*.py") if p.is_file())


def zip_members(name: str, root: Path = REPO_ROOT) -> list[tuple[str, Path]]:
    """(name in the zip, file on disk) for one function, in the order they are written."""
    folder = root / "functions" / name
    if not (folder / "main.py").is_file():
        raise FileNotFoundError(f"functions/{name}/main.py does not exist")
    members = {p.relative_to(folder).as_posix(): p for p in _python_files(folder)}
    requirements = folder / "requirements.txt"
    if requirements.is_file():
        members["requirements.txt"] = requirements
    common = root / "common"
    for p in _python_files(common):
        members["common/" + p.relative_to(common).as_posix()] = p
    return sorted(members.items())


def build_zip(name: str, out_dir: Path = DEFAULT_OUT, root: Path = REPO_ROOT) -> Path:
    """Write out_dir/<name>.zip and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in zip_members(name, root):
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.external_attr = _FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    partial.replace(target)
    return target


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - an object name, not security


def build_all(out_dir: Path = DEFAULT_OUT, root: Path = REPO_ROOT, names: list[str] | None = None) -> list[Path]:
    selected = names or function_names(root)
    if not selected:
        raise FileNotFoundError(f"no functions/<name>/main.py under {root}")
    return [build_zip(n, out_dir, root) for n in selected]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.package", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="functions to package (default: every functions/<name>)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        known = function_names()
        unknown = [n for n in args.names if n not in known]
        if unknown:
            raise FileNotFoundError(f"unknown function(s) {', '.join(unknown)}; known: {', '.join(known) or 'none'}")
        paths = build_all(args.out, names=args.names or None)
    except (OSError, ValueError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            count = len(archive.namelist())
        print(f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}  "
              f"{count} files  {path.stat().st_size // 1024} KiB  md5 {md5(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The schema as the cql/ files declare it: migrations, checksums, expected columns.

Both adapters apply these same files (SQLite through a small CQL->SQLite translation),
so one `verify` covers both.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

CQL_DIR = Path(__file__).resolve().parents[2] / "cql"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.cql$")
_CREATE_RE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\(", re.I)
_ALTER_ADD_RE = re.compile(r"ALTER\s+TABLE\s+(\w+)\s+ADD\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+(.+)$", re.I | re.S)
_INDEX_RE = re.compile(
    r"CREATE\s+CUSTOM\s+INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+ON\s+(\w+)\s*\(\s*(\w+)\s*\)\s+USING\s+'StorageAttachedIndex'",
    re.I,
)
_FORBIDDEN_RE = re.compile(r"\b(KEYSPACE|MATERIALIZED\s+VIEW|FUNCTION|AGGREGATE)\b", re.I)


class SchemaError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    text: str
    checksum: str
    statements: tuple

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


def split_statements(text: str) -> list[str]:
    lines = [ln.split("--", 1)[0] for ln in text.splitlines()]
    body = "\n".join(lines)
    return [s.strip() for s in body.split(";") if s.strip()]


def _migration_sources(cql_dir: Path | None) -> list[tuple[str, Path, str]]:
    """(file name, path, text) of every migration: from cql/ in a checkout, else from the bundle
    that ships inside each function zip (zips carry common/**/*.py only)."""
    directory = Path(cql_dir or CQL_DIR)
    if directory.is_dir():
        return [(p.name, p, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.cql"))]
    if cql_dir is not None:
        raise SchemaError(f"migration folder {directory} does not exist")
    from common.store import cql_bundle

    return [(name, directory / name, text) for name, text in sorted(cql_bundle.MIGRATIONS.items())]


def write_bundle(cql_dir: Path | None = None) -> Path:
    """Regenerate common/store/cql_bundle.py from cql/ (a unit test keeps the two identical)."""
    sources = _migration_sources(Path(cql_dir or CQL_DIR))
    body = "".join(f"    {name!r}: {text!r},\n" for name, _, text in sources)
    target = Path(__file__).with_name("cql_bundle.py")
    target.write_text(
        '"""Generated from cql/ by `python -m common.store.schema --bundle`: do not edit.\n\n'
        "Function zips hold only common/**/*.py, so the migrations travel inside this module.\n"
        '"""\n\nMIGRATIONS = {\n' + body + "}\n",
        encoding="utf-8",
    )
    return target


def load_migrations(cql_dir: Path | None = None) -> list[Migration]:
    found = []
    for file_name, path, text in _migration_sources(cql_dir):
        m = _FILE_RE.match(file_name)
        if not m:
            raise SchemaError(f"migration file name {file_name!r} is not NNNN_name.cql")
        statements = tuple(split_statements(text))
        for stmt in statements:
            if _FORBIDDEN_RE.search(stmt):
                raise SchemaError(f"{path.name}: Astra forbids this statement in migrations: {stmt[:60]}...")
        found.append(Migration(m.group(1), m.group(2), path, text, hashlib.sha256(text.encode()).hexdigest(), statements))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError(f"duplicate migration versions: {sorted(versions)}")
    return found


@dataclasses.dataclass
class TableDef:
    name: str
    columns: dict  # name -> cql type (lower case)
    partition_key: list
    clustering: list  # [(column, 'ASC'|'DESC')]


def _split_top_level(body: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in body:
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def parse_create_table(stmt: str) -> TableDef | None:
    stmt = stmt.strip()
    m = _CREATE_RE.match(stmt)
    if not m:
        return None
    depth, end = 0, None
    for i in range(m.end() - 1, len(stmt)):
        depth += {"(": 1, ")": -1}.get(stmt[i], 0)
        if depth == 0:
            end = i
            break
    if end is None:
        raise SchemaError(f"unbalanced parentheses in: {stmt[:80]}")
    name, body, options = m.group(1), stmt[m.end() : end], stmt[end + 1 :]
    columns, pk, clustering = {}, [], []
    for part in _split_top_level(body):
        if part.upper().startswith("PRIMARY KEY"):
            inner = part[part.index("(") + 1 : part.rindex(")")].strip()
            if inner.startswith("("):
                pk_part = inner[1 : inner.index(")")]
                rest = inner[inner.index(")") + 1 :]
            else:
                first, _, rest = inner.partition(",")
                pk_part, rest = first, "," + rest
            pk = [c.strip() for c in pk_part.split(",") if c.strip()]
            clustering = [(c.strip(), "ASC") for c in rest.split(",") if c.strip()]
        else:
            col, ctype = part.split(None, 1)
            columns[col] = ctype.strip().lower()
    order = re.search(r"CLUSTERING\s+ORDER\s+BY\s*\((.*?)\)", options, re.I | re.S)
    if order:
        direction = {}
        for item in order.group(1).split(","):
            col, d = item.split()
            direction[col] = d.upper()
        clustering = [(c, direction.get(c, "ASC")) for c, _ in clustering]
    return TableDef(name, columns, pk, clustering)


def expected_tables(migrations: list[Migration] | None = None) -> dict[str, TableDef]:
    """The tables and columns the files declare, after applying all of them in order."""
    tables: dict[str, TableDef] = {}
    for mig in migrations if migrations is not None else load_migrations():
        for stmt in mig.statements:
            t = parse_create_table(stmt)
            if t:
                tables[t.name] = t
                continue
            a = _ALTER_ADD_RE.match(stmt)
            if a:
                tables[a.group(1)].columns[a.group(2)] = a.group(3).strip().lower()
    return tables


def expected_columns(migrations: list[Migration] | None = None) -> dict[str, set]:
    return {name: set(t.columns) for name, t in expected_tables(migrations).items()}


def columns_added_by(migration: Migration) -> dict[str, set]:
    out: dict[str, set] = {}
    for stmt in migration.statements:
        t = parse_create_table(stmt)
        if t:
            out.setdefault(t.name, set()).update(t.columns)
            continue
        a = _ALTER_ADD_RE.match(stmt)
        if a:
            out.setdefault(a.group(1), set()).add(a.group(2))
    return out


def alter_add(stmt: str) -> tuple[str, str, str] | None:
    m = _ALTER_ADD_RE.match(stmt)
    return (m.group(1), m.group(2), m.group(3).strip()) if m else None


def sai_index(stmt: str) -> tuple[str, str, str] | None:
    m = _INDEX_RE.match(stmt)
    return (m.group(1), m.group(2), m.group(3)) if m else None


# ------------------------------------------------------------------ CQL -> SQLite
_SQLITE_TYPES = {
    "text": "TEXT",
    "timestamp": "TEXT",  # ISO-8601 UTC, millisecond precision: sorts correctly as text
    "date": "TEXT",
    "decimal": "TEXT",  # exact; ordering is done with a numeric key where needed
    "int": "INTEGER",
    "bigint": "INTEGER",
    "boolean": "INTEGER",
    "double": "REAL",
}


def sqlite_type(cql_type: str) -> str:
    if cql_type.startswith(("set<", "list<", "map<")):
        return "TEXT"  # JSON
    try:
        return _SQLITE_TYPES[cql_type]
    except KeyError:
        raise SchemaError(f"no SQLite mapping for CQL type {cql_type!r}") from None


def to_sqlite(stmt: str) -> list[str]:
    """Translate one CQL DDL statement into equivalent SQLite statements."""
    t = parse_create_table(stmt)
    if t:
        cols = [f"{c} {sqlite_type(ct)}" for c, ct in t.columns.items()]
        key = t.partition_key + [c for c, _ in t.clustering]
        return [f"CREATE TABLE IF NOT EXISTS {t.name} ({', '.join(cols)}, PRIMARY KEY ({', '.join(key)}))"]
    a = alter_add(stmt)
    if a:
        return [f"ALTER TABLE {a[0]} ADD COLUMN {a[1]} {sqlite_type(a[2].lower())}"]
    idx = sai_index(stmt)
    if idx:
        return [f"CREATE INDEX IF NOT EXISTS {idx[0]} ON {idx[1]} ({idx[2]})"]
    raise SchemaError(f"statement has no SQLite translation: {stmt[:80]}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--bundle"]:
        print(f"wrote {write_bundle()}")
    else:
        print("usage: python -m common.store.schema --bundle", file=sys.stderr)
        sys.exit(2)

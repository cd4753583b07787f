"""The migration runner on the embedded store: apply once, then nothing; checksums; partial failure."""
import shutil

import pytest

from common.store import migrations
from common.store.port import SchemaBehind
from common.store.schema import CQL_DIR as CQL, SchemaError, expected_columns, load_migrations, parse_create_table, to_sqlite
from common.store.sqlite import SQLiteStore

pytestmark = pytest.mark.unit


@pytest.fixture
def cql_copy(tmp_path):
    d = tmp_path / "cql"
    shutil.copytree(CQL, d)
    return d


def test_files_declare_the_dual_pipeline_columns():
    cols = expected_columns()
    assert {"pipeline_source", "last_pipeline_attempt", "processing_started_at"} <= cols["account_lineage"]
    labels = [m.label for m in load_migrations()]
    assert labels[:2] == ["0001_initial_schema", "0002_dual_pipeline"]


def test_create_table_parsing_and_translation():
    t = parse_create_table(
        "CREATE TABLE IF NOT EXISTS x (a text, b int, c set<text>, PRIMARY KEY ((a, b), c)) WITH CLUSTERING ORDER BY (c DESC)"
    )
    assert t.partition_key == ["a", "b"] and t.clustering == [("c", "DESC")] and t.columns["c"] == "set<text>"
    assert to_sqlite("ALTER TABLE x ADD d timestamp") == ["ALTER TABLE x ADD COLUMN d TEXT"]
    with pytest.raises(SchemaError):
        to_sqlite("DROP TABLE x")


def test_astra_forbidden_statements_are_refused(cql_copy):
    (cql_copy / "0099_bad.cql").write_text("CREATE KEYSPACE k WITH replication = {};")
    with pytest.raises(SchemaError, match="Astra forbids"):
        load_migrations(cql_copy)


def test_apply_twice_then_verify(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    first = migrations.migrate(store)
    assert first.ok and first.applied == [m.label for m in load_migrations()]
    second = migrations.migrate(store)
    assert second.applied == [] and "nothing to apply" in second.summary()
    assert migrations.verify(store).ok


def test_dry_run_changes_nothing(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    report = migrations.migrate(store, dry_run=True)
    assert report.not_applied and store.applied_migrations() == {} and "account_lineage" not in store.actual_columns()


def test_changed_applied_file_is_an_error(tmp_path, cql_copy):
    store = SQLiteStore(tmp_path / "s.db")
    migrations.migrate(store, migrations=load_migrations(cql_copy))
    f = cql_copy / "0002_dual_pipeline.cql"
    f.write_text(f.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(migrations.ChecksumMismatch, match="0002_dual_pipeline"):
        migrations.migrate(store, migrations=load_migrations(cql_copy))


def test_a_known_comment_only_edit_of_an_applied_file_is_accepted(tmp_path):
    """0001 was applied, then its comment changed: the checksum it was applied with is still accepted."""
    store = SQLiteStore(tmp_path / "s.db")
    migrations.migrate(store)
    (earlier,) = migrations.COMMENT_ONLY_EDITS["0001"]
    rec = store.applied_migrations()["0001"]
    store.record_migration("0001", rec["name"], earlier)  # as a deployment migrated before the edit has it
    assert store.applied_migrations()["0001"]["checksum"] == earlier != load_migrations()[0].checksum
    assert migrations.migrate(store).ok
    store.record_migration("0001", rec["name"], "0" * 64)  # any other checksum is still an error
    with pytest.raises(migrations.ChecksumMismatch, match="0001"):
        migrations.migrate(store)


def test_partial_failure_reports_exactly_what_was_applied(tmp_path, cql_copy):
    (cql_copy / "0090_good.cql").write_text("CREATE TABLE IF NOT EXISTS extra_a (k text, PRIMARY KEY ((k)));")
    (cql_copy / "0091_broken.cql").write_text(
        "CREATE TABLE IF NOT EXISTS extra_b (k text, PRIMARY KEY ((k)));\nALTER TABLE no_such_table ADD v text;"
    )
    (cql_copy / "0092_after.cql").write_text("CREATE TABLE IF NOT EXISTS extra_c (k text, PRIMARY KEY ((k)));")
    store = SQLiteStore(tmp_path / "s.db")
    report = migrations.migrate(store, migrations=load_migrations(cql_copy))
    assert not report.ok
    assert report.failed == "0091_broken" and report.failed_statement == 2 and report.statements_applied_in_failed == 1
    assert report.applied[-1] == "0090_good"
    assert report.not_applied == ["0091_broken", "0092_after"]
    assert "0091" not in store.applied_migrations() and "0090" in store.applied_migrations()
    # Fix the file (it was never recorded, so changing it is allowed) and rerun: it completes.
    (cql_copy / "0091_broken.cql").write_text("CREATE TABLE IF NOT EXISTS extra_b (k text, PRIMARY KEY ((k)));")
    again = migrations.migrate(store, migrations=load_migrations(cql_copy))
    assert again.ok and again.applied == ["0091_broken", "0092_after"]


def test_schema_gate_incident_replay(tmp_path):
    """DB at 0001, code expects 0002: the gate names what is missing; after migrate it opens. No row lost."""
    all_migs = load_migrations()
    store = SQLiteStore(tmp_path / "s.db")
    migrations.migrate(store, migrations=all_migs[:1])
    store.put_search("public", "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7", status="COMPLETE")
    gate = migrations.SchemaGate(store, recheck_s=0)
    with pytest.raises(SchemaBehind) as info:
        gate.require()
    assert info.value.missing_migrations == [m.label for m in all_migs[1:]]
    assert {"pipeline_source", "last_pipeline_attempt", "processing_started_at"} <= set(info.value.missing_columns["account_lineage"])
    assert "stellarmap migrate" in str(info.value)
    migrations.migrate(store)
    gate.require()
    assert store.get_search("public", "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7").status == "COMPLETE"


def test_the_bundled_migrations_match_cql_folder(tmp_path):
    """Function zips carry common/**/*.py only: the bundle must equal cql/ (regenerate with
    `python -m common.store.schema --bundle`)."""
    from common.store import cql_bundle

    on_disk = {p.name: p.read_text(encoding="utf-8") for p in sorted(CQL.glob("*.cql"))}
    assert cql_bundle.MIGRATIONS == on_disk, "run: python -m common.store.schema --bundle"


def test_migrations_load_from_the_bundle_without_a_cql_folder(tmp_path):
    """Lay out a function zip (common/ only, no cql/) and load the migrations there."""
    import subprocess

    shutil.copytree(CQL.parent / "common", tmp_path / "common", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import sys; sys.path.insert(0, '.'); from common.store.schema import load_migrations; print([m.checksum for m in load_migrations()])"
    out = subprocess.run(["python3", "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([m.checksum for m in load_migrations(CQL)])

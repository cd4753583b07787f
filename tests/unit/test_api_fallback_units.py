"""api_fallback's pieces that need no upstream: the task contract (bad input is a 400 and nothing
is written), auth, the schema gate, the checkpoint format, the responses Cloud Tasks retries on,
and the configuration rule (explicit argument, else env var, else a clear error naming it)."""
from __future__ import annotations

import pytest

from common.bootstrap import Container
from common.clock import SettableClock
from common.config import ConfigError, PipelineConfig, Settings
from common.domain import InvalidInput
from common.handlers import api_fallback
from common.handlers.api_fallback import Checkpoint, Deadline, ApiOutcome, handle, parse_task, respond, task_seconds
from common.store import migrations
from common.store.sqlite import SQLiteStore
from common.upstream.clients import Upstream
from common.upstream.ratelimit import Budget, RateLimiter
from common.upstream.transport import JsonTransport
from local.testing.fakes import RecordingQueue, call_handler
from tests.support import random_account

pytestmark = pytest.mark.unit

ACCOUNT = random_account()
# Nothing listens here: a test that reached an upstream would fail loudly instead of passing.
UNREACHABLE = {"HORIZON_URL_PUBLIC": "http://127.0.0.1:9/horizon", "HORIZON_URL_TESTNET": "http://127.0.0.1:9/horizon",
               "EXPERT_URL": "http://127.0.0.1:9/expert"}
UNREACHABLE_URLS = {"public": UNREACHABLE["HORIZON_URL_PUBLIC"], "testnet": UNREACHABLE["HORIZON_URL_TESTNET"]}


@pytest.fixture
def make(tmp_path):
    stores = []

    def build(token=None, migrate=True, extra=None):
        store = SQLiteStore(tmp_path / f"s{len(stores)}.db")
        stores.append(store)
        if migrate:
            migrations.migrate(store)
        settings = Settings.from_env(env=UNREACHABLE, internal_token=token, extra=extra or {})
        return Container(settings, SettableClock(), store=store, queue=RecordingQueue(),
                         pipeline_config=PipelineConfig.from_stored({}))

    yield build
    for s in stores:
        s.close()


def nothing_written(c, account=ACCOUNT):
    assert c.store.get_lineage("public", account) is None
    assert c.store.get_stage_executions("public", account) == []
    assert c.queue.tasks == []


@pytest.mark.parametrize("body,code,field", [
    ({"network": "mainnet", "account": ACCOUNT}, "invalid_network", "network"),
    ({"network": "public", "account": "G" + "A" * 55}, "invalid_account", "account"),
    ({"network": "public"}, "invalid_account", "account"),
    ({"network": "public", "account": ACCOUNT, "purpose": "delete"}, "invalid_purpose", "purpose"),
    ({"network": "public", "account": ACCOUNT, "generation": True}, "invalid_generation", "generation"),
    ({"network": "public", "account": ACCOUNT, "generation": "x" * 201}, "invalid_generation", "generation"),
    ({"network": "public", "account": ACCOUNT, "cursor": 12}, "invalid_cursor", "cursor"),
    ({"network": "public", "account": ACCOUNT, "sql": "drop"}, "invalid_request", None),
])
def test_bad_tasks_are_400_and_write_nothing(make, body, code, field):
    c = make()
    resp = call_handler(handle, c, body)
    assert resp.status_code == 400
    err = resp.get_json()["error"]
    assert err["code"] == code and err.get("field") == field
    nothing_written(c)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"'])
def test_bodies_that_are_not_json_objects_are_400(make, raw):
    c = make()
    resp = call_handler(handle, c, raw=raw)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"
    nothing_written(c)


def test_only_post(make):
    c = make()
    resp = call_handler(handle, c, method="GET")
    assert resp.status_code == 405


def test_internal_auth(make):
    c = make(token="s3cret")
    body = {"network": "public", "account": ACCOUNT, "purpose": "lineage", "generation": 0}
    assert call_handler(handle, c, body).status_code == 401
    assert call_handler(handle, c, body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    nothing_written(c)
    ok = call_handler(handle, c, body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.get_json()["status"] == "SKIPPED", "an unknown account is nothing to do"
    nothing_written(c)


def test_schema_behind_is_503_and_writes_nothing(make):
    c = make(migrate=False)
    resp = call_handler(handle, c, {"network": "public", "account": ACCOUNT})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "schema_behind"
    assert resp.headers["Retry-After"]
    assert "account_lineage" in resp.get_json()["error"]["details"]["missing_columns"] or resp.get_json()["error"]["details"]["missing_migrations"]


def test_misconfiguration_names_the_variable(make):
    c = make(extra={"API_TASK_SECONDS": "soon"})
    resp = call_handler(handle, c, {"network": "public", "account": ACCOUNT})
    assert resp.status_code == 503
    assert "API_TASK_SECONDS" in resp.get_json()["error"]["message"]
    nothing_written(c)


def test_tasks_for_accounts_not_waiting_are_skipped_without_any_upstream_call(make):
    c = make()
    for status in (None, "PROCESSING", "COMPLETE", "FAILED", "INVALID"):
        account = random_account()
        if status is None:
            c.store.put_lineage("public", account, stellar_creator_account=random_account())
        else:
            c.store.transition_lineage("public", account, None, status)
        resp = call_handler(handle, c, {"network": "public", "account": account, "purpose": "lineage"})
        body = resp.get_json()
        assert resp.status_code == 200 and body["status"] == "SKIPPED" and body["calls"] == {}, status
        assert c.store.get_lineage("public", account).status == status


def test_enrich_of_an_unknown_account_writes_nothing(make):
    c = make()
    resp = call_handler(handle, c, {"network": "public", "account": ACCOUNT, "purpose": "enrich"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "SKIPPED"
    nothing_written(c)


def test_parse_task_defaults():
    task = parse_task({"network": "testnet", "account": ACCOUNT})
    assert (task.network, task.purpose, task.generation, task.cursor) == ("testnet", "lineage", 0, None)
    with pytest.raises(InvalidInput):
        parse_task({"network": "public", "account": ACCOUNT, "purpose": None})


def test_checkpoint_round_trip_and_foreign_cursors():
    cp = Checkpoint("123456789", 17, False)
    assert cp.encode() == "horizon:v1:123456789:17:0"
    assert Checkpoint.decode(cp.encode()) == cp
    assert Checkpoint.decode(Checkpoint("5", 1, True).encode()).whole_history is True
    for raw in (None, "", "hubble:v1:2020-01-01T00:00:00Z:5", "horizon:v1:abc:1:0", "horizon:v1:1:2", "horizon:v1:1:x:0",
                "horizon:v1:1:2:3"):
        assert Checkpoint.decode(raw) is None, raw


def test_responses_tell_cloud_tasks_when_to_retry():
    limited = respond(ApiOutcome("RATE_LIMITED", "public", ACCOUNT, "lineage", retry_after=12.2, reason="429"))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "13"
    assert limited.get_json()["error"]["details"]["status"] == "RATE_LIMITED"
    retry = respond(ApiOutcome("RETRY", "public", ACCOUNT, "lineage", reason="503"))
    assert retry.status_code == 503 and retry.headers["Retry-After"] == str(api_fallback.RETRY_AFTER_S)
    for status in ("COMPLETE", "CONTINUED", "INVALID", "FAILED", "SKIPPED", "ENRICHED", "NOT_FOUND"):
        assert respond(ApiOutcome(status, "public", ACCOUNT, "lineage")).status_code == 200


def test_task_seconds_rule():
    assert task_seconds(Settings.from_env(env={})) == api_fallback.DEFAULT_TASK_SECONDS
    assert task_seconds(Settings.from_env(env={}, extra={"API_TASK_SECONDS": "45"})) == 45
    for bad in ("0", "99999", "x"):
        with pytest.raises(ConfigError) as info:
            task_seconds(Settings.from_env(env={}, extra={"API_TASK_SECONDS": bad}))
        assert info.value.variable == "API_TASK_SECONDS"


def test_deadline_bounds_the_inline_wait():
    clock = SettableClock()
    d = Deadline(clock, 100)
    assert d.max_wait() == api_fallback.MAX_INLINE_WAIT_S and not d.expired()
    clock.advance(99.5)
    assert d.max_wait() == api_fallback.MIN_INLINE_WAIT_S
    clock.advance(1)
    assert d.expired()


def test_upstream_settings_follow_the_config_rule():
    settings = Settings.from_env(env={}, extra={"UPSTREAM_TIMEOUT_S": "3", "UPSTREAM_ATTEMPTS": "2", "UPSTREAM_PROCESSES": "2"})
    up = Upstream.from_settings(settings, SettableClock())
    assert (up._timeout_s, up._attempts, up.processes) == (3.0, 2, 2)
    assert Upstream.from_settings(settings, SettableClock(), attempts=7)._attempts == 7, "an explicit argument wins"
    defaults = Upstream.from_settings(Settings.from_env(env={}), SettableClock())
    assert (defaults._timeout_s, defaults._attempts, defaults.processes) == (20.0, 4, 1)
    for name, bad in (("UPSTREAM_TIMEOUT_S", "fast"), ("UPSTREAM_ATTEMPTS", "0"), ("UPSTREAM_PROCESSES", "-3")):
        with pytest.raises(ConfigError) as info:
            Upstream.from_settings(Settings.from_env(env={}, extra={name: bad}), SettableClock())
        assert info.value.variable == name


def test_upstream_clients_are_lazy_and_budgets_follow_the_config():
    clock = SettableClock()
    up = Upstream({"public": "http://127.0.0.1:9/h"}, "http://127.0.0.1:9/e", clock, processes=2)
    assert up.metrics()["horizon"]["public"].keys() == {"limiter"}, "nothing built before first use"
    up.configure(PipelineConfig.from_stored({"horizon_max_per_hour": 7200, "expert_max_per_minute": 60, "upstream_rate_pct": 50}))
    assert up.limiters["horizon:public"].budget.rate_per_s == pytest.approx(7200 / 3600 * 0.5 / 2)
    assert up.limiters["expert"].budget.rate_per_s == pytest.approx(60 / 60 * 0.5 / 2)
    assert up.horizon("public") is up.horizon("public")
    with pytest.raises(ConfigError) as info:
        up.horizon("testnet")
    assert info.value.variable == "HORIZON_URL_TESTNET"
    with pytest.raises(InvalidInput):
        up.horizon("mainnet")
    assert up.metrics()["upstream_rate_pct"] == 50


def test_transport_refuses_non_http_base_urls():
    clock = SettableClock()
    for url in ("ftp://example.com", "file:///etc/passwd", "example.com"):
        with pytest.raises(ValueError):
            JsonTransport("horizon", url, RateLimiter("h", Budget(1, 1), clock), clock)


def test_adapters_refuse_bad_arguments_before_any_request():
    up = Upstream(UNREACHABLE_URLS, UNREACHABLE["EXPERT_URL"], SettableClock())
    horizon = up.horizon("public")
    for call in (lambda: horizon.account("GBAD"), lambda: horizon.operations("G" + "A" * 55),
                 lambda: horizon.operations(ACCOUNT, limit=201), lambda: horizon.operations(ACCOUNT, cursor="1; DROP"),
                 lambda: up.expert.account("mainnet", ACCOUNT), lambda: up.expert.account("public", "GBAD")):
        with pytest.raises(ValueError):
            call()
    assert up.metrics()["horizon"]["public"].get("requests", 0) == 0
    assert up.metrics()["expert"].get("requests", 0) == 0


def test_a_store_that_cannot_be_reached_is_503_and_retried(tmp_path):
    class DownStore(SQLiteStore):
        def applied_migrations(self):
            raise ConnectionError("no route to the store")

    store = DownStore(tmp_path / "down.db")
    c = Container(Settings.from_env(env=UNREACHABLE), SettableClock(), store=store, queue=RecordingQueue())
    resp = call_handler(handle, c, {"network": "public", "account": ACCOUNT})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "store_unavailable"
    assert resp.headers["Retry-After"]
    store.close()


def test_a_config_read_failure_is_503(tmp_path):
    class NoConfigStore(SQLiteStore):
        def _get_config(self):
            raise TimeoutError("config read timed out")

    store = NoConfigStore(tmp_path / "noconfig.db")
    migrations.migrate(store)
    c = Container(Settings.from_env(env=UNREACHABLE), SettableClock(), store=store, queue=RecordingQueue())
    resp = call_handler(handle, c, {"network": "public", "account": ACCOUNT})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "store_unavailable"
    assert c.queue.tasks == [] and store.get_lineage("public", ACCOUNT) is None
    store.close()


# ---------------------------------------------------------------------------------- label stages (fakes subclass the ports)
import math  # noqa: E402

from common.enrichment.toml import StellarTomlSource, TomlFetchError  # noqa: E402
from common.upstream.errors import MalformedResponse, NoBudget  # noqa: E402
from common.upstream.expert import DirectoryEntry, Expert  # noqa: E402


class ScriptedExpert(Expert):
    def __init__(self, entry=None, blocked=False, error=None):
        self.entry, self.blocked, self.error, self.calls = entry, blocked, error, []

    def account(self, network, account_id, max_wait_s=math.inf):
        raise AssertionError("the label stages never ask for the account")

    def directory(self, address, max_wait_s=math.inf, best_effort=False):
        self.calls.append(("directory", address, max_wait_s, best_effort))
        if self.error:
            raise self.error
        return self.entry

    def domain_blocked(self, domain, max_wait_s=math.inf, best_effort=False):
        self.calls.append(("blocked", domain, max_wait_s, best_effort))
        return self.blocked


class ScriptedToml(StellarTomlSource):
    def __init__(self, text=None, error=None):
        self.text, self.error, self.fetched = text, error, []

    def fetch(self, domain, max_wait_s=math.inf):
        self.fetched.append((domain, max_wait_s))
        if self.error:
            raise self.error
        return self.text


class UpstreamWith(Upstream):
    def __init__(self, expert):
        super().__init__(UNREACHABLE_URLS, UNREACHABLE["EXPERT_URL"], SettableClock())
        self._fake = expert

    @property
    def expert(self):
        return self._fake


def _labels(tmp_path, expert, toml, home_domain="anchor.example", before=None):
    store = SQLiteStore(tmp_path / "labels.db")
    migrations.migrate(store)
    c = Container(Settings.from_env(env=UNREACHABLE), SettableClock(), store=store, queue=RecordingQueue(),
                  pipeline_config=PipelineConfig.from_stored({}), upstream=UpstreamWith(expert), toml=toml)
    store.put_lineage("public", ACCOUNT, **(before or {}))
    api_fallback._directory_labels(c, "public", ACCOUNT, "API", home_domain)
    api_fallback._stellar_toml(c, "public", ACCOUNT, "API", home_domain)
    stages = {e.stage: e for e in store.get_stage_executions("public", ACCOUNT, 10)}
    return store.get_lineage("public", ACCOUNT), stages, store


def test_labels_are_sorted_deduplicated_and_the_blocked_domain_tagged(tmp_path):
    expert = ScriptedExpert(DirectoryEntry(ACCOUNT, "Anchor", "anchor.example", ("issuer", "anchor")), blocked=True)
    toml = ScriptedToml(f'ACCOUNTS = ["{ACCOUNT}"]\n[DOCUMENTATION]\nORG_NAME = "Anchor"\nORG_URL = "https://anchor.example"\n')
    rec, stages, store = _labels(tmp_path, expert, toml)
    assert rec.tags == ["anchor", "blocked-domain", "issuer"] and rec.directory_name == "Anchor"
    assert rec.toml_org_name == "Anchor" and rec.toml_lists_account is True and rec.toml_error is None
    assert all(call[2] == 0 and call[3] is True for call in expert.calls), "spare budget only, never a wait"
    assert toml.fetched == [("anchor.example", 0)]
    assert stages["directory_labels"].status == "SUCCESS" and stages["stellar_toml"].status == "SUCCESS"
    store.close()


def test_no_expert_budget_defers_and_keeps_the_old_labels(tmp_path):
    rec, stages, store = _labels(tmp_path, ScriptedExpert(error=NoBudget("expert", 4.0)), ScriptedToml("x = 1"),
                                 before={"tags": ["exchange"], "directory_name": "Old"})
    assert rec.tags == ["exchange"] and rec.directory_name == "Old"
    assert stages["directory_labels"].status == "SKIPPED" and stages["directory_labels"].error_message.startswith("deferred: Stellar Expert budget")
    store.close()


def test_an_expert_failure_fails_only_the_stage(tmp_path):
    rec, stages, store = _labels(tmp_path, ScriptedExpert(error=MalformedResponse("expert", "not JSON")), ScriptedToml("x = 1"),
                                 before={"tags": ["exchange"]})
    assert rec.tags == ["exchange"] and stages["directory_labels"].status == "FAILED"
    assert stages["stellar_toml"].status == "SUCCESS" and rec.toml_lists_account is False
    store.close()


def test_a_toml_error_is_stored_and_clears_what_the_last_file_said(tmp_path):
    rec, stages, store = _labels(tmp_path, ScriptedExpert(), ScriptedToml(error=TomlFetchError("too_large", "too big")),
                                 before={"toml_org_name": "Was", "toml_lists_account": True})
    assert rec.toml_error == "too_large: too big" and rec.toml_checked_at is not None
    assert rec.toml_org_name is None and rec.toml_lists_account is None
    assert stages["stellar_toml"].status == "FAILED" and stages["stellar_toml"].error_message == rec.toml_error
    store.close()


def test_a_paced_toml_fetch_is_deferred_not_waited_for(tmp_path):
    rec, stages, store = _labels(tmp_path, ScriptedExpert(), ScriptedToml(error=TomlFetchError("rate_limited", "later")))
    assert rec.toml_checked_at is None and rec.toml_error is None and stages["stellar_toml"].status == "SKIPPED"
    store.close()


def test_hostile_or_absent_home_domains(tmp_path):
    expert, toml = ScriptedExpert(), ScriptedToml("x = 1")
    rec, stages, store = _labels(tmp_path, expert, toml, home_domain="<script>.example")
    assert [c[0] for c in expert.calls] == ["directory"], "no blocked-domain question for text that is no host name"
    store.close()
    expert, toml = ScriptedExpert(), ScriptedToml("x = 1")
    rec, stages, store = _labels(tmp_path / "none", expert, toml, home_domain=None)
    assert stages["stellar_toml"].status == "SKIPPED" and toml.fetched == []
    store.close()


class HalfBudgetExpert(ScriptedExpert):
    """The directory answers; the blocked-domain question finds no spare budget (or fails)."""

    def __init__(self, entry, blocked_error):
        super().__init__(entry)
        self.blocked_error = blocked_error

    def domain_blocked(self, domain, max_wait_s=math.inf, best_effort=False):
        raise self.blocked_error


def test_a_deferred_blocked_domain_check_keeps_its_previous_answer_and_the_new_entry(tmp_path):
    entry = DirectoryEntry(ACCOUNT, "Fake giveaway", None, ("malicious",))
    rec, stages, store = _labels(tmp_path, HalfBudgetExpert(entry, NoBudget("expert", 2.0)), ScriptedToml("x = 1"),
                                 before={"tags": ["blocked-domain"]})
    assert rec.tags == ["blocked-domain", "malicious"] and rec.directory_name == "Fake giveaway"
    assert stages["directory_labels"].status == "SUCCESS" and "deferred" in stages["directory_labels"].error_message
    store.close()
    rec, stages, store = _labels(tmp_path / "2", HalfBudgetExpert(entry, MalformedResponse("expert", "bad")), ScriptedToml("x = 1"))
    assert rec.tags == ["malicious"] and stages["directory_labels"].status == "FAILED"
    store.close()

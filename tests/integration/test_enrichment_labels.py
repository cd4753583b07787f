"""Issue 10, parts 3 and 4: stellar.toml enrichment and Stellar Expert directory labels, end to end.

The real api_fallback handler (real Flask requests), the real stores, the simulator over real HTTP
(its Open Directory, blocked domains and stellar.toml files, hostile ones included) and a real TLS
server (local.tls_front.TlsFront: a throw-away CA, relaying to the simulator's toml files) that the
fetcher reaches through the local-only settings STELLAR_TOML_CONNECT_TO / _CA_FILE / _ALLOW_NETWORKS.
No mock of our own code: the SSRF rules, the size and time limits and the TOML parser are the real ones.
"""
from __future__ import annotations

import zlib

import pytest

from common.enrichment.toml import TomlFetchError, validate_domain
from common.handlers.api_fallback import BLOCKED_DOMAIN_TAG, DIRECTORY_LABELS, STELLAR_TOML
from common.upstream.expert import DirectoryEntry, HttpExpert
from local.simulator import Simulator
from local.simulator.network import HOSTILE_HOME_DOMAINS
from local.tls_front import TlsFront
from tests.integration.test_api_fallback import Harness, stages_of, truth

pytestmark = pytest.mark.integration

EXPERT_PLENTY = {"expert_max_per_minute": 10**5}  # labels take spare budget only: give them some
CERT_NAMES = ["stellarmap.test"]  # every other name gets its certificate on first use (SNI)


@pytest.fixture
def sim(request, clock):
    seed = zlib.crc32(request.node.nodeid.encode()) % 1_000_000
    with Simulator(seed=seed, port=0, clock=clock, accounts=400, airdrop_children=300) as s:
        yield s


@pytest.fixture
def front(sim, tmp_path):
    with TlsFront(sim.base_url, CERT_NAMES, workdir=tmp_path / "tls") as f:
        yield f


def toml_env(front, **over) -> dict:
    env = {"STELLAR_TOML_CONNECT_TO": f"127.0.0.1:{front.port}", "STELLAR_TOML_CA_FILE": str(front.ca_file),
           "STELLAR_TOML_ALLOW_NETWORKS": "127.0.0.1/32", "STELLAR_TOML_TIMEOUT_S": "2", "STELLAR_TOML_RATE": "1000"}
    env.update(over)
    return env


def by_domain(sim, kind: str) -> dict[str, str]:
    return {truth(sim, a)["home_domain"]: a for a in sim.pick("public", kind, limit=50)}


def enrich(h: Harness, store, account: str) -> dict:
    """An `enrich` task for a known account (what the Hubble path and children crawls queue)."""
    if store.get_lineage("public", account) is None:
        store.put_lineage("public", account, created_at=h.clock.now())
    body = h.api({"network": "public", "account": account, "purpose": "enrich", "generation": 0}).get_json()
    assert body["status"] == "ENRICHED", body
    return body


def toml_requests(sim) -> int:
    return sum(sim.stats()["requests"].get("toml", {}).values())


# ---------------------------------------------------------------------------------- directory labels
def test_a_listed_exchange_gets_its_tags_name_and_its_own_toml(sim, front, store, clock):
    exchange = sim.pick("public", "exchange", limit=1)[0]
    t = truth(sim, exchange)
    h = Harness(sim, store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    enrich(h, store, exchange)
    rec = store.get_lineage("public", exchange)
    assert sorted(rec.tags) == sorted(t["directory"]["tags"]) and "exchange" in rec.tags
    assert rec.directory_name == t["directory"]["name"]
    assert rec.toml_org_name and rec.toml_org_url == f"https://{t['home_domain']}"
    assert rec.toml_lists_account is True and rec.toml_error is None and rec.toml_checked_at == clock.now()
    stages = stages_of(store, exchange)
    assert stages[DIRECTORY_LABELS].status == "SUCCESS" and stages[STELLAR_TOML].status == "SUCCESS"
    assert rec.status is None, "an enrich task never changes the status"


def test_an_account_missing_from_the_directory_has_no_tags_and_no_error(sim, front, sqlite_store, clock):
    account = next(a for a in sim.pick("public", "recent", limit=50) if truth(sim, a)["directory"] is None)
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    h.run(account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.status == "COMPLETE" and not rec.tags and rec.directory_name is None
    stage = stages_of(sqlite_store, account)[DIRECTORY_LABELS]
    assert stage.status == "SUCCESS" and "not listed" in stage.error_message
    assert sum(sim.stats()["requests"].get("expert.directory", {}).values()) >= 1, "Expert was asked ({} = not listed)"


def test_a_blocked_home_domain_is_tagged_and_its_phishing_toml_recorded(sim, front, store, clock):
    account = by_domain(sim, "hostile_toml")["phishing-toml.example"]
    h = Harness(sim, store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    enrich(h, store, account)
    rec = store.get_lineage("public", account)
    assert BLOCKED_DOMAIN_TAG in rec.tags and "malicious" in rec.tags, rec.tags
    assert rec.tags == sorted(set(rec.tags)), "sorted, no duplicates"
    assert rec.toml_org_name == "Claim your free XLM", "what the file claims is stored as text, the tags warn"


def test_a_parent_domain_on_the_blocked_list_blocks_the_sub_domain(sim, front, sqlite_store, clock):
    account = by_domain(sim, "hostile")["login.xlm-giveaway.example"]
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    enrich(h, sqlite_store, account)
    assert BLOCKED_DOMAIN_TAG in sqlite_store.get_lineage("public", account).tags


def test_a_malformed_directory_body_fails_the_stage_and_the_account_still_completes(sim, front, sqlite_store, clock):
    account = sim.pick("public", "recent", limit=1)[0]
    sim.set_faults(rules={"expert.directory": {"malformed": 1.0}})
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    h.run(account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.status == "COMPLETE" and rec.stellar_creator_account == truth(sim, account)["creator"]
    stage = stages_of(sqlite_store, account)[DIRECTORY_LABELS]
    assert stage.status == "FAILED" and "not JSON" in stage.error_message
    enrichments = sum(sim.stats()["requests"].get("horizon.account", {}).values())
    assert sum(sim.stats()["requests"].get("expert.directory", {}).values()) == enrichments, \
        "best effort: one attempt per enrichment, no retries"


def test_no_spare_expert_budget_defers_the_labels_and_keeps_the_old_ones(sim, front, sqlite_store, clock):
    account = sim.pick("public", "exchange", limit=1)[0]
    sqlite_store.put_lineage("public", account, tags=["exchange"], directory_name="kept", created_at=clock.now())
    h = Harness(sim, sqlite_store, clock, config={"expert_max_per_minute": 0}, extra=toml_env(front))
    enrich(h, sqlite_store, account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.tags == ["exchange"] and rec.directory_name == "kept"
    stage = stages_of(sqlite_store, account)[DIRECTORY_LABELS]
    assert stage.status == "SKIPPED" and stage.error_message.startswith("deferred: Stellar Expert budget")
    assert sum(sim.stats()["requests"].get("expert.directory", {}).values()) == 0


def test_expert_port_parses_the_simulator_s_directory_shapes(sim, clock):
    from common.config import PipelineConfig
    from common.upstream.clients import Upstream

    up = Upstream({"public": sim.horizon_url("public"), "testnet": sim.horizon_url("testnet")}, sim.expert_url, clock, timeout_s=2)
    up.configure(PipelineConfig.from_stored({"expert_max_per_minute": 10**5}))
    expert = up.expert
    assert isinstance(expert, HttpExpert)
    exchange = sim.pick("public", "exchange", limit=1)[0]
    t = truth(sim, exchange)
    assert expert.directory(exchange) == DirectoryEntry(exchange, t["directory"]["name"], t["home_domain"],
                                                        tuple(sorted(t["directory"]["tags"])))
    unlisted = next(a for a in sim.pick("public", "recent", limit=50) if truth(sim, a)["directory"] is None)
    assert expert.directory(unlisted) is None
    assert expert.domain_blocked("phishing-toml.example") is True
    assert expert.domain_blocked("deep.login.xlm-giveaway.example") is True
    assert expert.domain_blocked("exchange-1.example") is False
    with pytest.raises(ValueError):
        expert.domain_blocked("<script>.example")  # never sent
    up.close()


# ---------------------------------------------------------------------------------- stellar.toml
@pytest.mark.parametrize("domain, code", [
    ("huge.toml.example", "too_large"),
    ("malformed.toml.example", "malformed"),
    ("html.toml.example", "malformed"),
    ("redirect-private.toml.example", "not_https"),  # 302 to http://169.254.169.254/...: refused before connecting
    ("redirect-loopback.toml.example", "not_https"),  # 302 to the simulator's own http://127.0.0.1:PORT/
    ("nested-arrays.toml.example", "malformed"),  # 5,000 nested arrays: past a recursive parser's depth
    ("nested-tables.toml.example", "malformed"),  # 5,000 nested inline tables, the same
])
def test_hostile_toml_files_become_toml_errors_and_the_account_completes(sim, front, sqlite_store, clock, domain, code):
    account = by_domain(sim, "hostile_toml")[domain]
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    h.run(account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.status == "COMPLETE", "a hostile toml never fails the lineage"
    assert all(status == 200 for status, _ in h.api_answers), f"no task answered 503 or spent a retry: {h.api_answers}"
    assert rec.toml_error and rec.toml_error.startswith(f"{code}: "), rec.toml_error
    assert rec.toml_checked_at is not None and rec.toml_org_name is None and rec.toml_lists_account is None
    stage = stages_of(sqlite_store, account)[STELLAR_TOML]
    assert stage.status == "FAILED" and stage.error_message == rec.toml_error
    if domain.startswith("redirect-"):
        assert "https" in rec.toml_error, "the http target is refused before any DNS lookup or connection"


def test_a_redirect_with_a_non_ascii_location_is_followed_without_a_retry(sim, front, sqlite_store, clock):
    """The file's host answers 302 with raw UTF-8 bytes in Location (`?lang=español`): the fetcher
    percent-encodes them, as browsers and curl do, and reads the file; the task answers 200 once
    (it once raised UnicodeEncodeError: a 503 and a spent retry, every time)."""
    account = by_domain(sim, "hostile_toml")["unicode-redirect.toml.example"]
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    enrich(h, sqlite_store, account)
    assert [status for status, _ in h.api_answers] == [200]
    rec = sqlite_store.get_lineage("public", account)
    assert rec.toml_error is None and rec.toml_lists_account is True and rec.toml_org_name == "Unicode Redirect"
    assert stages_of(sqlite_store, account)[STELLAR_TOML].status == "SUCCESS"
    assert toml_requests(sim) == 2, "the redirect, then the file at the percent-encoded target"


def test_an_impersonator_s_claims_bind_only_its_own_account(sim, front, sqlite_store, clock):
    """impersonator.toml.example lists the exchanges' accounts besides its owner: the owner's row records
    what its own file says; the exchanges' rows are untouched by it (only their own domain's file counts)."""
    account = by_domain(sim, "hostile_toml")["impersonator.toml.example"]
    exchange = sim.pick("public", "exchange", limit=1)[0]
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    enrich(h, sqlite_store, account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.toml_org_name == "Exchange 1 (official support)" and rec.toml_error is None
    assert "exchange" not in (rec.tags or []), "a toml's claims never become directory labels"
    assert sqlite_store.get_lineage("public", exchange) is None, "claiming an account writes nothing for it"
    enrich(h, sqlite_store, exchange)
    ex = sqlite_store.get_lineage("public", exchange)
    assert ex.toml_org_url == f"https://{truth(sim, exchange)['home_domain']}" and ex.toml_lists_account is True
    assert ex.toml_org_name != rec.toml_org_name


def test_each_exchange_toml_lists_only_its_own_account(sim, front, sqlite_store, clock):
    """Each exchange's file lists that exchange only: checked against another account (the simulator gives
    every account its own domain, so the cross check reads exchange 1's file through the same client)."""
    exchanges = sim.pick("public", "exchange", limit=3)
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    for account in exchanges:
        enrich(h, sqlite_store, account)
        assert sqlite_store.get_lineage("public", account).toml_lists_account is True
    from common.enrichment.toml import parse_stellar_toml

    text = h.c.toml.fetch(truth(sim, exchanges[0])["home_domain"])
    assert parse_stellar_toml(text, exchanges[1]).lists_account is False


def test_a_slow_toml_times_out(sim, front, sqlite_store, clock):
    account = sim.pick("public", "exchange", limit=1)[0]
    sim.set_faults(rules={"toml": {"slow": 1.0, "slow_seconds": 2.0}})
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front, STELLAR_TOML_TIMEOUT_S="0.5"))
    enrich(h, sqlite_store, account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.toml_error.startswith("timeout: ") and rec.toml_lists_account is None
    assert "exchange" in rec.tags, "the directory labels do not depend on the toml"


def _not_a_host(text: str) -> bool:
    try:
        validate_domain(text)
    except TomlFetchError:
        return True
    return False


@pytest.mark.parametrize("text", [d for d in HOSTILE_HOME_DOMAINS if _not_a_host(d)])
def test_a_home_domain_that_is_no_host_name_is_never_fetched(sim, front, sqlite_store, clock, text):
    account = by_domain(sim, "hostile")[text]
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front))
    enrich(h, sqlite_store, account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.home_domain == text, "kept as given"
    assert rec.toml_error.startswith("invalid_domain: ")
    assert toml_requests(sim) == 0, "nothing fetched"
    assert sum(sim.stats()["requests"].get("expert.blocked_domains", {}).values()) == 0, "never sent to Expert either"


def test_a_name_that_resolves_to_loopback_is_refused_without_the_local_allowance(sim, front, sqlite_store, clock):
    account = sim.pick("public", "exchange", limit=1)[0]
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front, STELLAR_TOML_ALLOW_NETWORKS=""))
    enrich(h, sqlite_store, account)
    assert sqlite_store.get_lineage("public", account).toml_error.startswith("forbidden_address: ")
    assert toml_requests(sim) == 0


def test_toml_checks_can_be_turned_off(sim, front, sqlite_store, clock):
    account = sim.pick("public", "exchange", limit=1)[0]
    h = Harness(sim, sqlite_store, clock, config=EXPERT_PLENTY, extra=toml_env(front, STELLAR_TOML_ENABLED="0"))
    enrich(h, sqlite_store, account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.toml_checked_at is None and stages_of(sqlite_store, account)[STELLAR_TOML].status == "SKIPPED"

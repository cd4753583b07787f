"""Every simulator route over real HTTP: Horizon, Stellar Expert, stellar.toml, control API."""
from __future__ import annotations

import json
import re
import tomllib
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from common.domain import GENESIS_ACCOUNT
from local.simulator import Simulator
from local.simulator.codec import toid
from local.simulator.network import BLOCKED_DOMAINS, ledger_close_time

pytestmark = pytest.mark.integration

SEVEN_DECIMALS = re.compile(r"^\d+\.\d{7}$")
CREATE_KEYS = {"_links", "id", "paging_token", "transaction_successful", "source_account", "type", "type_i",
               "created_at", "transaction_hash", "starting_balance", "funder", "account"}


@pytest.fixture(scope="module")
def sim():
    with Simulator(accounts=600, airdrop_children=2_500, seed=21, port=0, rate_limits=False) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture
def net(sim):
    return sim.network("public")


def horizon(sim, path, **params):
    return requests.get(f"{sim.horizon_url('public')}{path}", params=params, timeout=30)


def walk(http, url, params):
    """Follow Horizon's `next` links until an empty page; return every record."""
    records, pages = [], 0
    response = http.get(url, params=params, timeout=30)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        page = body["_embedded"]["records"]
        if not page:
            return records, pages
        records += page
        pages += 1
        response = http.get(body["_links"]["next"]["href"], timeout=30)


def expected_ids(net, address, include_failed=False):
    streams, failed = net.operation_streams(address)
    ids = sorted([i for s in streams for i in s] + (list(failed) if include_failed else []))
    return [str(i) for i in ids if i > toid(net.elder_ledger, 0, 0)]


# ------------------------------------------------------------------ Horizon
def test_horizon_root_reports_the_history_window(sim, http, net):
    body = http.get(sim.horizon_url("public") + "/", timeout=30).json()
    assert body["history_elder_ledger"] == net.elder_ledger
    assert body["history_latest_ledger"] == net.latest_ledger
    assert body["network_passphrase"] == "Public Global Stellar Network ; September 2015"
    testnet = http.get(sim.horizon_url("testnet"), timeout=30).json()
    assert testnet["network_passphrase"] == "Test SDF Network ; September 2015"


def test_account_has_horizons_shape(sim, http, net):
    address = net.address(net.exchanges[0])
    response = http.get(f"{sim.horizon_url()}/accounts/{address}", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/hal+json")
    body = response.json()
    assert body["id"] == body["account_id"] == body["paging_token"] == address
    assert set(body["flags"]) == {"auth_required", "auth_revocable", "auth_immutable", "auth_clawback_enabled"}
    native = [b for b in body["balances"] if b["asset_type"] == "native"]
    assert len(native) == 1 and SEVEN_DECIMALS.match(native[0]["balance"])
    credit = [b for b in body["balances"] if b["asset_type"] != "native"]
    assert credit and all(SEVEN_DECIMALS.match(b["balance"]) and b["asset_issuer"].startswith("G") for b in credit)
    assert body["subentry_count"] == len(credit)
    assert body["home_domain"] == net.home_domain(net.exchanges[0])
    assert body["last_modified_time"].endswith("Z") and body["sequence"].isdigit()
    truth = sim.truth("public", address)
    assert native[0]["balance"] == truth["xlm_balance"]


def test_account_without_home_domain_omits_it_and_hostile_domains_arrive_intact(sim, http, net):
    plain = next(i for i in range(1, net.size) if net.home_domain(i) is None and net.exists(i))
    assert "home_domain" not in http.get(f"{sim.horizon_url()}/accounts/{net.address(plain)}", timeout=30).json()
    for index in net.hostile:
        body = http.get(f"{sim.horizon_url()}/accounts/{net.address(index)}", timeout=30).json()
        assert body["home_domain"] == net.home_domain(index)


def test_sponsored_zero_balance_account(sim, http, net):
    zero = next(i for i in net.sponsored if net.balances[i] == 0)
    body = http.get(f"{sim.horizon_url()}/accounts/{net.address(zero)}", timeout=30).json()
    assert [b["balance"] for b in body["balances"] if b["asset_type"] == "native"] == ["0.0000000"]
    assert body["sponsor"] == net.address(net.creator[zero])


@pytest.mark.parametrize("which", ["missing", "merged_gone", "ghost", "other_network"])
def test_unknown_accounts_are_404_problem_json(sim, http, net, which):
    address = {
        "missing": net.missing_address(0),
        "merged_gone": net.address(net.merged_gone[0]),
        "ghost": net.address(net.total),
        "other_network": sim.network("testnet").address(3),
    }[which]
    response = http.get(f"{sim.horizon_url()}/accounts/{address}", timeout=30)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "https://stellar.org/horizon-errors/not_found" and problem["status"] == 404


def test_merged_account_keeps_its_history(sim, http, net):
    gone = net.address(net.merged_gone[0])
    records, _ = walk(http, f"{sim.horizon_url()}/accounts/{gone}/operations", {"limit": 200})
    assert [r["id"] for r in records] == expected_ids(net, gone)


@pytest.mark.parametrize("address", ["GBAD", "G" + "A" * 55, "SAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"])
def test_invalid_account_ids_are_400(sim, http, address):
    for path in (f"/accounts/{address}", f"/accounts/{address}/operations"):
        response = http.get(sim.horizon_url() + path, timeout=30)
        assert response.status_code == 400
        assert response.json()["extras"]["invalid_field"] == "account_id"


@pytest.mark.parametrize(
    "params, field",
    [
        ({"order": "sideways"}, "order"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "-1"}, "cursor"),
        ({"include_failed": "maybe"}, "include_failed"),
    ],
)
def test_bad_paging_parameters_are_400(sim, http, net, params, field):
    response = http.get(f"{sim.horizon_url()}/accounts/{net.address(1)}/operations", params=params, timeout=30)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["extras"]["invalid_field"] == field


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_follows_links_without_skips_or_duplicates(sim, http, net, order):
    accounts = [net.exchanges[2], net.airdrop, 0, net.merged[-1], net.recreation_of[net.merged[-1]][1]]
    for index in accounts:
        address = net.address(index)
        expected = expected_ids(net, address)
        records, pages = walk(http, f"{sim.horizon_url()}/accounts/{address}/operations", {"limit": 200, "order": order})
        ids = [r["id"] for r in records]
        assert ids == (expected if order == "asc" else expected[::-1])
        assert len(ids) == len(set(ids))
        assert [r["paging_token"] for r in records] == ids


def test_small_pages_and_prev_links(sim, http, net):
    address = net.address(net.chain[-2])
    expected = expected_ids(net, address)
    assert len(expected) >= 2
    records, pages = walk(http, f"{sim.horizon_url()}/accounts/{address}/operations", {"limit": 1})
    assert [r["id"] for r in records] == expected and pages == len(expected)
    page = http.get(f"{sim.horizon_url()}/accounts/{address}/operations", params={"cursor": expected[0], "limit": 1},
                    timeout=30).json()
    assert [r["id"] for r in page["_embedded"]["records"]] == [expected[1]]
    query = parse_qs(urlsplit(page["_links"]["prev"]["href"]).query)
    assert query["order"] == ["desc"] and query["cursor"] == [expected[1]]
    back = http.get(page["_links"]["prev"]["href"], timeout=30).json()["_embedded"]["records"]
    assert [r["id"] for r in back] == [expected[0]]
    end = http.get(f"{sim.horizon_url()}/accounts/{address}/operations", params={"cursor": expected[-1]}, timeout=30).json()
    assert end["_embedded"]["records"] == []
    assert parse_qs(urlsplit(end["_links"]["next"]["href"]).query)["cursor"] == [expected[-1]]


def test_create_account_records_carry_the_documented_fields(sim, http, net):
    address = net.address(net.airdrop)
    records = http.get(f"{sim.horizon_url()}/accounts/{address}/operations", params={"limit": 50}, timeout=30).json()
    creates = [r for r in records["_embedded"]["records"] if r["type"] == "create_account"]
    assert creates
    for record in creates:
        assert set(record) == CREATE_KEYS
        assert record["type_i"] == 0 and record["transaction_successful"] is True
        assert record["funder"] == record["source_account"] == address
        assert SEVEN_DECIMALS.match(record["starting_balance"]) and record["created_at"].endswith("Z")
        assert int(record["id"]) > 0 and record["id"] == record["paging_token"]
        truth = sim.truth("public", record["account"])
        assert record["funder"] in [e["creator"] for e in truth["creation_events"]]


def test_failed_creates_appear_only_with_include_failed(sim, http, net):
    f = next(f for f in range(len(net.failed_ledger)) if net.failed_ledger[f] >= net.elder_ledger)
    funder = net.address(net.failed_funder[f])
    failed_id = str(toid(*net._failed_slot(f)))
    plain, _ = walk(http, f"{sim.horizon_url()}/accounts/{funder}/operations", {"limit": 200})
    assert failed_id not in [r["id"] for r in plain]
    with_failed, _ = walk(http, f"{sim.horizon_url()}/accounts/{funder}/operations", {"limit": 200, "include_failed": "true"})
    record = next(r for r in with_failed if r["id"] == failed_id)
    assert record["transaction_successful"] is False and record["type"] == "create_account"
    assert [r["id"] for r in with_failed] == expected_ids(net, funder, include_failed=True)


def test_cursor_now(sim, http, net):
    address = net.address(net.exchanges[0])
    asc = http.get(f"{sim.horizon_url()}/accounts/{address}/operations", params={"cursor": "now"}, timeout=30).json()
    assert asc["_embedded"]["records"] == []
    desc = http.get(f"{sim.horizon_url()}/accounts/{address}/operations", params={"cursor": "now", "order": "desc"},
                    timeout=30).json()
    assert [r["id"] for r in desc["_embedded"]["records"]] == expected_ids(net, address)[::-1][:10]


def test_retention_window_prunes_old_history(sim, http, net):
    old = next(i for i in net.pick("old", 50)["accounts"] if net.children_count(net.resolve(i["account"])[1]) == 0)
    address = old["account"]
    index = net.resolve(address)[1]
    # The account itself is there ...
    assert http.get(f"{sim.horizon_url()}/accounts/{address}", timeout=30).status_code == 200
    # ... but not the operation that created it, so only Stellar Expert knows the creator.
    records, _ = walk(http, f"{sim.horizon_url()}/accounts/{address}/operations", {"limit": 200})
    assert not any(r["type"] == "create_account" and r["account"] == address for r in records)
    expert = http.get(f"{sim.expert_url}/explorer/public/account/{address}", timeout=30).json()
    assert expert["creator"] == net.address(net.creator[index])
    before = str(toid(net.elder_ledger - 100, 0, 0))
    gone = http.get(f"{sim.horizon_url()}/accounts/{address}/operations", params={"order": "desc", "cursor": before},
                    timeout=30)
    assert gone.status_code == 410
    assert gone.json()["type"] == "https://stellar.org/horizon-errors/before_history"
    hub = net.address(0)
    asc = http.get(f"{sim.horizon_url()}/accounts/{hub}/operations", params={"cursor": "1", "limit": 5}, timeout=30).json()
    assert [r["id"] for r in asc["_embedded"]["records"]] == expected_ids(net, hub)[:5]


def test_single_operation_route(sim, http, net):
    recent = expected_ids(net, net.address(net.airdrop))[-1]
    body = http.get(f"{sim.horizon_url()}/operations/{recent}", timeout=30).json()
    assert body["id"] == recent and body["funder"] == net.address(net.airdrop)
    pruned = toid(net.ledgers[1], 1, 1)
    assert http.get(f"{sim.horizon_url()}/operations/{pruned}", timeout=30).status_code == 404
    assert http.get(f"{sim.horizon_url()}/operations/12x", timeout=30).status_code == 400
    assert http.get(f"{sim.horizon_url()}/ledgers", timeout=30).status_code == 404
    assert http.get(f"{sim.base_url}/horizon/futurenet/accounts/{GENESIS_ACCOUNT}", timeout=30).status_code == 404


def test_horizon_refuses_other_methods(sim, http):
    response = http.post(f"{sim.horizon_url()}/accounts/{GENESIS_ACCOUNT}", timeout=30)
    assert response.status_code == 405


# ------------------------------------------------------------------ Stellar Expert
def test_expert_account_has_creator_and_created(sim, http, net):
    for index in (net.chain[3], net.size + 4, net.merged[0]):
        address = net.address(index)
        body = http.get(f"{sim.expert_url}/explorer/public/account/{address}", timeout=30).json()
        truth = sim.truth("public", address)
        assert body["account"] == address
        assert body["creator"] == truth["creation_events"][0]["creator"]  # the first creator, also when re-created
        first_ledger = truth["creation_events"][0]["ledger"]
        assert body["created"] == int(ledger_close_time(first_ledger).timestamp())
    genesis = http.get(f"{sim.expert_url}/explorer/public/account/{GENESIS_ACCOUNT}", timeout=30).json()
    assert "creator" not in genesis
    gone = http.get(f"{sim.expert_url}/explorer/public/account/{net.address(net.merged_gone[0])}", timeout=30).json()
    assert gone["deleted"] is True and gone["creator"] == net.address(net.creator[net.merged_gone[0]])
    exchange = http.get(f"{sim.expert_url}/explorer/public/account/{net.address(net.exchanges[0])}", timeout=30).json()
    assert exchange["payments"] >= 10_000 and exchange["assets"][0] == "XLM"


@pytest.mark.parametrize(
    "path, status, fragment",
    [
        ("/explorer/public/account/{missing}", 404, "Not found."),
        ("/explorer/futurenet/account/{missing}", 400, "Invalid parameter: network."),
        ("/explorer/public/account/GBAD", 400, "Invalid parameter: account."),
        ("/explorer/public/nothing-here", 404, "Not found."),
    ],
)
def test_expert_errors(sim, http, net, path, status, fragment):
    response = http.get(sim.expert_url + path.format(missing=net.missing_address(1)), timeout=30)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and fragment in body["error"]


def test_directory_entries_and_listing(sim, http, net):
    exchange = net.address(net.exchanges[0])
    entry = http.get(f"{sim.expert_url}/explorer/directory/{exchange}", timeout=30).json()
    assert entry["address"] == exchange and "exchange" in entry["tags"] and entry["name"] == "Exchange 1"
    legacy = http.get(f"{sim.expert_url}/explorer/public/directory/{exchange}", timeout=30).json()
    assert legacy == entry
    assert http.get(f"{sim.expert_url}/explorer/directory/{net.address(7)}", timeout=30).json() == {}
    assert http.get(f"{sim.expert_url}/explorer/directory/GBAD", timeout=30).status_code == 400
    listed = http.get(f"{sim.expert_url}/explorer/directory", params={"tag[]": "exchange", "limit": 200}, timeout=30).json()
    records = listed["_embedded"]["records"]
    assert {r["address"] for r in records} >= {net.address(e) for e in net.exchanges}
    assert all("exchange" in r["tags"] for r in records)
    malicious = http.get(f"{sim.expert_url}/explorer/directory", params={"tag[]": "malicious"}, timeout=30).json()
    assert {r["address"] for r in malicious["_embedded"]["records"]} >= {net.address(a) for a in net.malicious}
    unknown = http.get(f"{sim.expert_url}/explorer/directory", params={"tag[]": "nope"}, timeout=30)
    assert unknown.status_code == 400 and "Unknown tag" in unknown.json()["error"]
    tags = http.get(f"{sim.expert_url}/explorer/directory/tags", timeout=30).json()
    assert {"exchange", "malicious", "airdrop"} <= {t["name"] for t in tags}


def test_directory_paging_by_cursor(sim, http):
    everything = http.get(f"{sim.expert_url}/explorer/directory", params={"limit": 200}, timeout=30).json()
    all_addresses = [r["address"] for r in everything["_embedded"]["records"]]
    assert all_addresses == sorted(all_addresses) and len(all_addresses) > 10
    paged, url = [], f"{sim.expert_url}/explorer/directory?limit=4"
    while True:
        body = http.get(url, timeout=30).json()
        if not body["_embedded"]["records"]:
            break
        paged += [r["address"] for r in body["_embedded"]["records"]]
        url = body["_links"]["next"]["href"]
    assert paged == all_addresses


def test_hostile_directory_names_survive(sim, http, net):
    names = [e["name"] for e in net.directory.values()]
    assert any("<script>" in n for n in names) and any(len(n) >= 1000 for n in names)
    listed = http.get(f"{sim.expert_url}/explorer/directory", params={"tag[]": "unsafe", "limit": 200}, timeout=30).json()
    served = {r["name"] for r in listed["_embedded"]["records"]}
    assert any("<script>" in n for n in served) and any(not n.isascii() for n in served)


def test_blocked_domains(sim, http):
    listing = http.get(f"{sim.expert_url}/explorer/directory/blocked-domains", timeout=30).json()
    assert [r["domain"] for r in listing["_embedded"]["records"]] == sorted(BLOCKED_DOMAINS)
    for domain, blocked in (("xlm-giveaway.example", True), ("login.XLM-giveaway.example", True),
                            ("exchange-1.example", False), ("giveaway.example", False)):
        body = http.get(f"{sim.expert_url}/explorer/directory/blocked-domains/{domain}", timeout=30).json()
        assert body == {"domain": domain, "blocked": blocked}
    found = http.get(f"{sim.expert_url}/explorer/directory/blocked-domains", params={"search": "giveaway"}, timeout=30)
    assert [r["domain"] for r in found.json()["_embedded"]["records"]] == ["xlm-giveaway.example"]


# ------------------------------------------------------------------ stellar.toml
def test_toml_for_an_anchor_lists_its_accounts_and_currencies(sim, http, net):
    issuer = net.issuers[0]
    domain = net.home_domain(issuer)
    response = http.get(sim.toml_url(domain), timeout=30)
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
    parsed = tomllib.loads(response.text)
    assert net.address(issuer) in parsed["ACCOUNTS"]
    assert parsed["NETWORK_PASSPHRASE"] == net.passphrase
    assert {c["code"] for c in parsed["CURRENCIES"]} == {"USD", "GOLDBACKED12"}


def test_toml_for_an_ordinary_site_and_by_host_header(sim, http, net):
    index = next(i for i in range(1, net.size) if (net.home_domain(i) or "").startswith("site-"))
    domain = net.home_domain(index)
    by_path = tomllib.loads(http.get(sim.toml_url(domain), timeout=30).text)
    by_host = http.get(f"{sim.base_url}/.well-known/stellar.toml", headers={"Host": f"{domain}:8100"}, timeout=30)
    assert by_path["ACCOUNTS"] == [net.address(index)]
    assert tomllib.loads(by_host.text) == by_path
    testnet = sim.network("testnet")
    t_index = next(i for i in range(1, testnet.size) if (testnet.home_domain(i) or "").startswith("site-"))
    parsed = tomllib.loads(http.get(sim.toml_url(testnet.home_domain(t_index)), timeout=30).text)
    assert parsed["ACCOUNTS"] == [testnet.address(t_index)] and parsed["NETWORK_PASSPHRASE"] == testnet.passphrase


def test_hostile_tomls(sim, http, net):
    huge = http.get(sim.toml_url("huge.toml.example"), timeout=60)
    assert huge.status_code == 200 and len(huge.content) >= 2 * 1024 * 1024
    malformed = http.get(sim.toml_url("malformed.toml.example"), timeout=30)
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(malformed.text)
    private = http.get(sim.toml_url("redirect-private.toml.example"), allow_redirects=False, timeout=30)
    assert private.status_code == 302 and private.headers["Location"].startswith("http://169.254.169.254/")
    loopback = http.get(sim.toml_url("redirect-loopback.toml.example"), allow_redirects=False, timeout=30)
    assert loopback.status_code == 302 and urlsplit(loopback.headers["Location"]).hostname == "127.0.0.1"
    html = http.get(sim.toml_url("html.toml.example"), timeout=30)
    assert html.headers["Content-Type"].startswith("text/html") and "<script>" in html.text
    impostor = tomllib.loads(http.get(sim.toml_url("impersonator.toml.example"), timeout=30).text)
    exchange = net.address(net.exchanges[0])
    assert exchange in impostor["ACCOUNTS"] and net.home_domain(net.exchanges[0]) != "impersonator.toml.example"
    phishing = tomllib.loads(http.get(sim.toml_url("phishing-toml.example"), timeout=30).text)
    assert phishing["ACCOUNTS"] and "phishing-toml.example" in BLOCKED_DOMAINS


def test_toml_for_unknown_or_hostile_string_domains_is_404(sim, http, net):
    for domain in ("nobody.example", net.home_domain(net.hostile[0])):
        response = http.get(f"{sim.base_url}/toml/{quote(domain, safe='')}/.well-known/stellar.toml", timeout=30)
        assert response.status_code == 404


# ------------------------------------------------------------------ control API
def test_health_and_kinds(sim, http, net):
    health = http.get(f"{sim.base_url}/_sim/health", timeout=30).json()
    assert health["status"] == "ok" and health["networks"]["public"]["accounts"] == net.size
    kinds = http.get(f"{sim.base_url}/_sim/accounts/public", timeout=30).json()["kinds"]
    assert kinds["exchange"] == 3 and kinds["airdrop_child"] == net.airdrop_size


def test_truth_over_http_matches_python(sim, http, net):
    address = net.address(net.merged[0])
    body = http.get(f"{sim.base_url}/_sim/truth/public/{address}", params={"children_limit": 5}, timeout=30).json()
    assert body == json.loads(json.dumps(net.truth(address, 0, 5)))
    airdrop = net.address(net.airdrop)
    page = http.get(f"{sim.base_url}/_sim/truth/public/{airdrop}",
                    params={"children_cursor": 100, "children_limit": 50}, timeout=30).json()["children"]
    assert page["total"] == net.airdrop_size and len(page["items"]) == 50 and page["next_cursor"] == "150"


def test_pick_over_http(sim, http, net):
    body = http.get(f"{sim.base_url}/_sim/accounts/public", params={"kind": "hva", "min_balance": "750000", "limit": 100},
                    timeout=30).json()
    assert body["accounts"] and all(float(a["xlm_balance"]) >= 750_000 for a in body["accounts"])
    missing = http.get(f"{sim.base_url}/_sim/accounts/testnet", params={"kind": "missing", "limit": 2}, timeout=30).json()
    for entry in missing["accounts"]:
        assert http.get(f"{sim.horizon_url('testnet')}/accounts/{entry['account']}", timeout=30).status_code == 404


@pytest.mark.parametrize(
    "path, params, code",
    [
        ("/_sim/accounts/public", {"kind": "nonsense"}, "invalid_kind"),
        ("/_sim/accounts/public", {"kind": "exchange", "limit": "0"}, "invalid_limit"),
        ("/_sim/accounts/public", {"kind": "hva", "min_balance": "lots"}, "invalid_min_balance"),
        ("/_sim/accounts/futurenet", {"kind": "exchange"}, "invalid_network"),
        (f"/_sim/truth/public/{GENESIS_ACCOUNT}", {"children_limit": "100000"}, "invalid_children_limit"),
        ("/_sim/truth/public/GBAD", {}, "invalid_account"),
    ],
)
def test_control_api_refuses_bad_input(sim, http, path, params, code):
    response = http.get(sim.base_url + path, params=params, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


@pytest.mark.parametrize("length, status, code", [("banana", 400, "invalid_content_length"), ("-5", 400, "invalid_content_length"),
                                                  (str(2 << 20), 413, "body_too_large")])
def test_bad_body_lengths_are_refused(sim, length, status, code):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=30)
    connection.putrequest("POST", "/_sim/faults")
    connection.putheader("Content-Length", length)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == status and json.loads(response.read())["error"]["code"] == code
    connection.close()


def test_unknown_routes_and_methods(sim, http):
    assert http.get(f"{sim.base_url}/nothing", timeout=30).json()["error"]["code"] == "not_found"
    assert http.put(f"{sim.base_url}/_sim/faults", timeout=30).status_code == 405
    assert http.post(f"{sim.base_url}/_sim/faults", data="{not json", timeout=30).json()["error"]["code"] == "invalid_json"


def test_sequence_ledger_and_time_appear_only_for_changes_since_protocol_19(sim, http, net):
    """Horizon's sequence_ledger/sequence_time: the ledger and unix time of the last sequence number
    change, which stellar-core records from protocol 19 on; omitted for accounts unchanged since."""
    seen = {True: 0, False: 0}
    for index in list(range(1, net.size, 23)) + sorted(net.bump_of):
        state = net.state(index)
        if not state.exists:
            continue
        body = http.get(f"{sim.horizon_url()}/accounts/{net.address(index)}", timeout=30).json()
        assert int(body["sequence"]) == state.sequence
        present = "sequence_ledger" in body
        seen[present] += 1
        assert present == ("sequence_time" in body) == (state.sequence_ledger is not None)
        if present:
            assert body["sequence_ledger"] == state.sequence_ledger >= net.protocol19_ledger
            assert body["sequence_time"] == str(int(ledger_close_time(state.sequence_ledger).timestamp()))
    assert seen[True] and seen[False]


def test_bump_sequence_accounts_over_http(sim, http, net):
    body = http.get(f"{sim.base_url}/_sim/accounts/public", params={"kind": "bump_sequence", "limit": 50}, timeout=30).json()
    assert len(body["accounts"]) == len(net.bump_of)
    entry = body["accounts"][0]
    truth = http.get(f"{sim.base_url}/_sim/truth/public/{entry['account']}", timeout=30).json()
    assert truth["sequence_matches_creation"] is False and truth["ledger_from_sequence"] > truth["creation_ledger"]
    account = http.get(f"{sim.horizon_url()}/accounts/{entry['account']}", timeout=30).json()
    assert account["sequence"] == truth["sequence"] and int(account["sequence"]) >> 32 == truth["ledger_from_sequence"]
    records, _ = walk(http, f"{sim.horizon_url()}/accounts/{entry['account']}/operations", {"limit": 200})
    bumps = [r for r in records if r["type"] == "bump_sequence"]
    if truth["bump_sequence"]["ledger"] >= net.elder_ledger:
        assert [(r["id"], r["type_i"], r["bump_to"], r["source_account"]) for r in bumps] == [
            (truth["bump_sequence"]["operation_id"], 11, truth["bump_sequence"]["bump_to"], entry["account"])]
    else:
        assert bumps == []  # pruned with the rest of the history before the window
    kinds = http.get(f"{sim.base_url}/_sim/accounts/public", timeout=30).json()["kinds"]
    assert kinds["bump_sequence"] == len(net.bump_of)

"""Parsing of Horizon and Stellar Expert bodies (common/upstream/horizon.py, expert.py) and the
transport's Retry-After reading: exact decimals, hostile strings kept as given, every malformed
shape refused as MalformedResponse (which the transport retries like a 5xx)."""
from __future__ import annotations

import copy
import datetime as dt
import email.utils
from decimal import Decimal

import pytest

from common.upstream.errors import MalformedResponse
from common.upstream.expert import parse_account as parse_expert
from common.upstream.horizon import Operation, parse_account, parse_operation, parse_operations, parse_root
from common.upstream.transport import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, retry_after_seconds
from tests.support import random_account

pytestmark = pytest.mark.unit

A, B, ISSUER = random_account(), random_account(), random_account()


def account_body(**over):
    body = {
        "id": A,
        "account_id": A,
        "sequence": "123456789012",
        "balances": [
            {"balance": "12.3400000", "asset_type": "credit_alphanum4", "asset_code": "USD", "asset_issuer": ISSUER},
            {"balance": "5.0000000", "asset_type": "liquidity_pool_shares", "liquidity_pool_id": "ab" * 32},
            {"balance": "9999.9999999", "asset_type": "native"},
        ],
        "home_domain": "example.com",
        "flags": {"auth_required": True, "auth_revocable": False, "auth_immutable": False, "auth_clawback_enabled": True},
        "thresholds": {"low_threshold": 1, "med_threshold": 2, "high_threshold": 3},
        "signers": [{"key": B, "weight": 5, "type": "ed25519_public_key"}, {"key": A, "weight": 7, "type": "ed25519_public_key"}],
        "last_modified_time": "2025-12-31T23:59:59Z",
    }
    body.update(over)
    return body


def test_account_is_parsed_exactly():
    acct = parse_account(account_body(), A)
    assert acct.xlm_balance == Decimal("9999.9999999") and isinstance(acct.xlm_balance, Decimal)
    assert acct.assets == [
        {"asset_type": "credit_alphanum4", "asset_code": "USD", "asset_issuer": ISSUER, "balance": "12.3400000"},
        {"asset_type": "liquidity_pool_shares", "liquidity_pool_id": "ab" * 32, "balance": "5.0000000"},
    ]
    assert acct.flags == {"auth_required": True, "auth_revocable": False, "auth_immutable": False, "auth_clawback_enabled": True}
    assert acct.thresholds == {"master_key_weight": 7, "low_threshold": 1, "med_threshold": 2, "high_threshold": 3}
    assert acct.home_domain == "example.com"


def test_the_largest_balance_survives_without_float_rounding():
    body = account_body(balances=[{"balance": "922337203685.4775807", "asset_type": "native"}])
    assert parse_account(body, A).xlm_balance == Decimal("922337203685.4775807")


@pytest.mark.parametrize("domain", [
    "<script>alert('stellarmap')</script>.example", '"><img src=x onerror=alert(1)>', "x" * 995 + ".test",
    "ステラ.例え.テスト", "🚀💰.example", "\u202egnp.elpmaxe", "'; DROP TABLE account_lineage; --", "../../etc/passwd",
    "line1\nline2\t.example", "   ", "stеllar.org",
])
def test_hostile_home_domains_are_kept_exactly(domain):
    assert parse_account(account_body(home_domain=domain), A).home_domain == domain


def test_missing_home_domain_and_flags_default():
    body = account_body()
    del body["home_domain"]
    body["flags"] = {}
    body["signers"] = []
    acct = parse_account(body, A)
    assert acct.home_domain is None
    assert acct.flags == dict.fromkeys(acct.flags, False)
    assert acct.thresholds["master_key_weight"] == 0


def _broken(path, value):
    body = account_body()
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize("path,value", [
    pytest.param(("account_id",), random_account(), id="account_id-another-account"),  # a fixed id: xdist workers collect alike
    (("balances",), "lots"),
    (("balances",), [{"balance": "1.0", "asset_type": "credit_alphanum4", "asset_code": "USD", "asset_issuer": ISSUER}]),
    (("balances", 2, "balance"), 1.5),
    (("balances", 2, "balance"), "1e9"),
    (("balances", 2, "balance"), "-1.0"),
    (("balances", 2, "balance"), "NaN"),
    (("balances", 0, "asset_issuer"), "GBAD"),
    (("balances", 0, "asset_code"), None),
    (("balances", 1, "liquidity_pool_id"), KeyError),
    (("balances", 2, "asset_type"), KeyError),
    (("home_domain",), 42),
    (("flags",), None),
    (("flags", "auth_required"), "yes"),
    (("thresholds",), KeyError),
    (("thresholds", "low_threshold"), 256),
    (("thresholds", "med_threshold"), True),
    (("signers",), "none"),
    (("signers", 1, "weight"), -1),
    (("sequence",), 12),
])
def test_malformed_accounts_are_refused(path, value):
    with pytest.raises(MalformedResponse):
        parse_account(_broken(path, value), A)


@pytest.mark.parametrize("body", [None, [], "x", 1])
def test_non_objects_are_refused(body):
    with pytest.raises(MalformedResponse):
        parse_account(body, A)
    with pytest.raises(MalformedResponse):
        parse_operations(body, 200)
    with pytest.raises(MalformedResponse):
        parse_root(body)
    with pytest.raises(MalformedResponse):
        parse_expert(body, A)


def create_record(op_id: int, funder: str, new: str, ok: bool = True, over: dict | None = None) -> dict:
    record = {"id": str(op_id), "paging_token": str(op_id), "type": "create_account", "transaction_successful": ok,
              "created_at": "2025-06-01T12:00:00Z", "transaction_hash": "ab" * 32, "funder": funder, "account": new,
              "starting_balance": "2.5000000", "source_account": funder}
    record.update(over or {})
    return record


def test_operations_page_and_its_cursor():
    records = [create_record(10, B, A), {"id": "11", "paging_token": "11", "type": "payment", "transaction_successful": True,
                                          "created_at": "2025-06-02T00:00:00Z"}, create_record(12, A, B)]
    page = parse_operations({"_embedded": {"records": records}}, 3)
    assert [op.id for op in page.records] == ["10", "11", "12"]
    assert page.next_cursor == "12", "a full page has a next page"
    assert parse_operations({"_embedded": {"records": records}}, 200).next_cursor is None, "a short page is the last"
    first, payment, child = page.records
    assert first.creates(A) and not first.child_of(A) and first.starting_balance == Decimal("2.5")
    assert first.created_at == dt.datetime(2025, 6, 1, 12, tzinfo=dt.timezone.utc)
    assert not payment.creates(A) and not payment.child_of(A)
    assert child.child_of(A) and not child.creates(A)
    assert Operation("4294967296", "4294967296", "payment", True, first.created_at).ledger == 1


def test_failed_creates_are_neither_creations_nor_children():
    op = parse_operation(create_record(10, B, A, ok=False))
    assert not op.creates(A) and not op.child_of(B)


def test_a_self_funded_record_is_not_a_child():
    assert not parse_operation(create_record(10, A, A)).child_of(A)


@pytest.mark.parametrize("over", [
    {"id": "12x"}, {"paging_token": None}, {"type": 0}, {"transaction_successful": "true"}, {"created_at": "yesterday"},
    {"created_at": None}, {"funder": "GXYZ"}, {"account": None}, {"starting_balance": "2,5"}, {"transaction_hash": 5},
])
def test_malformed_operations_are_refused(over):
    with pytest.raises(MalformedResponse):
        parse_operations({"_embedded": {"records": [create_record(10, B, A, over=over)]}}, 200)


def test_pages_must_be_ascending_and_within_the_limit():
    records = [create_record(12, B, A), create_record(10, A, B)]
    with pytest.raises(MalformedResponse):
        parse_operations({"_embedded": {"records": records}}, 200)
    with pytest.raises(MalformedResponse):
        parse_operations({"_embedded": {"records": [create_record(10, B, A), create_record(11, A, B)]}}, 1)
    with pytest.raises(MalformedResponse):
        parse_operations({"_embedded": {"records": "none"}}, 200)
    with pytest.raises(MalformedResponse):
        parse_operations({"_links": {}}, 200)


def test_root_gives_the_elder_ledger():
    assert parse_root({"history_elder_ledger": 123, "history_latest_ledger": 456}) == 123
    for bad in ({}, {"history_elder_ledger": "1"}, {"history_elder_ledger": -1}, {"history_elder_ledger": True}):
        with pytest.raises(MalformedResponse):
            parse_root(bad)


def test_expert_account():
    info = parse_expert({"account": A, "created": 1443631614, "creator": B, "payments": 3}, A)
    assert info.created == dt.datetime.fromtimestamp(1443631614, dt.timezone.utc) and info.creator == B and not info.deleted
    gone = parse_expert({"account": A, "created": 1600000000, "creator": B, "deleted": True}, A)
    assert gone.deleted
    genesis = parse_expert({"account": A, "created": 1443631614}, A)
    assert genesis.creator is None


@pytest.mark.parametrize("body", [
    {"account": B, "created": 1600000000, "creator": A},
    {"account": A, "created": "1600000000", "creator": B},
    {"account": A, "created": 99, "creator": B},
    {"account": A, "created": 10**12, "creator": B},
    {"account": A, "created": float("nan"), "creator": B},
    {"account": A, "created": True, "creator": B},
    {"account": A, "created": 1600000000, "creator": "nobody"},
    {"account": A, "created": 1600000000, "creator": B, "deleted": "no"},
])
def test_malformed_expert_answers_are_refused(body):
    with pytest.raises(MalformedResponse):
        parse_expert(copy.deepcopy(body), A)


def test_retry_after_in_seconds_dates_and_horizon_s_reset_header():
    now = 1_800_000_000.0
    assert retry_after_seconds({"Retry-After": "7"}, now) == 7
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now) == pytest.approx(30, abs=1)
    assert retry_after_seconds({"X-RateLimit-Reset": "12"}, now) == 12
    assert retry_after_seconds({"X-RateLimit-Reset": str(int(now + 40))}, now) == pytest.approx(40)
    assert retry_after_seconds({}, now) == DEFAULT_RETRY_AFTER_S
    assert retry_after_seconds({"Retry-After": "soon"}, now) == DEFAULT_RETRY_AFTER_S
    assert retry_after_seconds({"Retry-After": "-5"}, now) == 0
    assert retry_after_seconds({"Retry-After": "1e12"}, now) == MAX_RETRY_AFTER_S
    assert retry_after_seconds({"Retry-After": "inf"}, now) == DEFAULT_RETRY_AFTER_S


# ---------------------------------------------------------------------------------- Open Directory
from common.upstream.expert import DirectoryEntry, check_host_name, parse_blocked_domain, parse_directory_entry  # noqa: E402


def test_directory_entry_is_parsed_with_clean_sorted_tags():
    body = {"address": A, "name": "<script>alert(1)</script>", "domain": "exchange-1.example", "tags": ["exchange", "Memo-Required", "exchange"]}
    assert parse_directory_entry(body, A) == DirectoryEntry(A, "<script>alert(1)</script>", "exchange-1.example", ("exchange", "memo-required"))


def test_an_empty_directory_answer_means_not_listed():
    assert parse_directory_entry({}, A) is None


def test_a_directory_entry_without_tags_or_name_is_still_an_entry():
    assert parse_directory_entry({"address": A}, A) == DirectoryEntry(A, None, None, ())


def test_long_directory_names_are_capped():
    assert len(parse_directory_entry({"address": A, "name": "N" * 5000, "tags": []}, A).name) == 500


@pytest.mark.parametrize("body", [
    [], "x", None, 5,
    {"address": B, "name": "other", "tags": []},
    {"address": A, "name": 7, "tags": []},
    {"address": A, "domain": ["x"], "tags": []},
    {"address": A, "tags": "exchange"},
    {"address": A, "tags": [1]},
    {"address": A, "tags": ["<b>bold</b>"]},
    {"address": A, "tags": ["x" * 41]},
    {"address": A, "tags": ["t"] * 21},
])
def test_malformed_directory_bodies_are_refused(body):
    with pytest.raises(MalformedResponse):
        parse_directory_entry(body, A)


def test_blocked_domain_answers():
    assert parse_blocked_domain({"domain": "Phish.example", "blocked": True}, "phish.example") is True
    assert parse_blocked_domain({"blocked": False}, "ok.example") is False


@pytest.mark.parametrize("body", [{"domain": "other.example", "blocked": True}, {"domain": "x.example"}, {"blocked": "yes"}, [], None])
def test_malformed_blocked_domain_answers_are_refused(body):
    with pytest.raises(MalformedResponse):
        parse_blocked_domain(body, "x.example")


@pytest.mark.parametrize("text", ["<script>.example", "../../etc/passwd", "a b.example", "", None, "localhost", "x" * 300 + ".example"])
def test_only_host_names_are_asked_about(text):
    with pytest.raises(ValueError):
        check_host_name(text)


def test_host_names_are_normalised():
    assert check_host_name(" Login.XLM-Giveaway.example. ") == "login.xlm-giveaway.example"

"""Properties of the simulated networks (generator, ground truth, operation ids), in process."""
from __future__ import annotations

import datetime as dt
import os
import random
from collections import Counter

import pytest
from stellar_sdk import StrKey

from common.domain import GENESIS_ACCOUNT, InvalidInput
from local.simulator.codec import AddressCodec, split_toid, strkey_decode, strkey_encode, toid
from local.simulator.network import (
    BALANCE_BANDS,
    HVA_THRESHOLDS,
    STROOPS,
    TX_CREATE,
    Network,
    NetworkConfig,
    ledger_close_time,
)

pytestmark = pytest.mark.unit

SMALL = dict(accounts=600, airdrop_children=2_500, seed=11)


@pytest.fixture(scope="module")
def default_public():
    return Network(NetworkConfig())


@pytest.fixture(scope="module")
def default_testnet():
    return Network(NetworkConfig(network="testnet"))


@pytest.fixture(scope="module")
def small():
    return Network(NetworkConfig(**SMALL))


def all_core_states(net):
    return [net.state(i) for i in range(net.size)]


# ------------------------------------------------------------------ determinism and identity
def test_same_seed_builds_the_same_network():
    a, b = Network(NetworkConfig(**SMALL)), Network(NetworkConfig(**SMALL))
    assert [a.address(i) for i in range(0, a.total, 97)] == [b.address(i) for i in range(0, b.total, 97)]
    assert a.creator == b.creator and a.ledgers == b.ledgers and a.balances == b.balances
    assert a.all_operation_ids() == b.all_operation_ids()
    sample = a.address(a.merged[0])
    assert a.truth(sample) == b.truth(sample)


def test_seed_and_network_change_the_data(small):
    other_seed = Network(NetworkConfig(**{**SMALL, "seed": 12}))
    testnet = Network(NetworkConfig(**{**SMALL, "network": "testnet"}))
    for other in (other_seed, testnet):
        assert other.address(0) == GENESIS_ACCOUNT == small.address(0)
        assert {other.address(i) for i in range(1, 200)}.isdisjoint({small.address(i) for i in range(1, 200)})
        assert other.creator != small.creator
        # An address of one network is unknown to the other.
        assert other.resolve(small.address(5)) is None


def test_addresses_are_valid_strkeys_and_decode_back(small):
    rng = random.Random(3)
    for index in [0, 1, small.size - 1, small.size, small.total - 1] + rng.sample(range(small.total), 300):
        address = small.address(index)
        assert StrKey.is_valid_ed25519_public_key(address)
        kind, number = small.resolve(address)
        assert (number if kind == "core" else small.size + number) == index
    assert small.resolve(StrKey.encode_ed25519_public_key(os.urandom(32))) is None
    assert small.resolve(small.missing_address(0)) is None
    assert StrKey.is_valid_ed25519_public_key(small.missing_address(3))


def test_strkey_codec_matches_stellar_sdk():
    for _ in range(200):
        payload = os.urandom(32)
        address = strkey_encode(payload)
        assert address == StrKey.encode_ed25519_public_key(payload)
        assert strkey_decode(address) == payload
    good = strkey_encode(bytes(32))
    broken_checksum = good[:-1] + ("A" if good[-1] != "A" else "B")
    seed = StrKey.encode_ed25519_secret_seed(bytes(32))
    for bad in (broken_checksum, seed, good[:-1], good.lower(), "G" + "0" * 55, None, 42):
        assert strkey_decode(bad) is None
    codec = AddressCodec(b"k")
    assert [codec.decode(codec.encode(i)) for i in (1, 2, 2**40)] == [1, 2, 2**40]


def test_toid_layout_orders_by_ledger_then_transaction_then_operation():
    assert toid(10, 1, 1) < toid(10, 1, 2) < toid(10, 2, 1) < toid(11, 1, 1)
    assert split_toid(toid(123456, 789, 42)) == (123456, 789, 42)


def test_the_two_default_networks_hold_different_accounts(default_public, default_testnet):
    assert default_public.address(1) != default_testnet.address(1)
    assert default_public.address(0) == default_testnet.address(0) == GENESIS_ACCOUNT
    assert default_public.passphrase != default_testnet.passphrase


# ------------------------------------------------------------------ structure the issue demands
def test_creator_chains_reach_at_least_12_deep(default_public):
    net = default_public
    deepest = max(range(net.size), key=lambda i: net.depth[i])
    truth = net.truth(net.address(deepest))
    assert truth["depth"] >= 12
    assert truth["ancestors"][0] == GENESIS_ACCOUNT
    chain = truth["ancestors"] + [truth["account"]]
    for parent, child in zip(chain, chain[1:]):
        assert net.truth(child)["creator"] == parent


def test_airdrop_has_at_least_100k_children_and_they_page(default_public):
    net = default_public
    airdrop = net.address(net.airdrop)
    first = net.truth(airdrop, children_cursor=0, children_limit=500)
    assert first["children"]["total"] >= 100_000
    last = net.truth(airdrop, children_cursor=first["children"]["total"] - 3, children_limit=500)
    assert len(last["children"]["items"]) == 3 and last["children"]["next_cursor"] is None
    for item in first["children"]["items"][:20] + last["children"]["items"]:
        assert net.truth(item["account"])["creator"] == airdrop
    times = [item["created_at"] for item in first["children"]["items"]]
    assert times == sorted(times)


def test_fan_out_is_heavy_tailed(default_public):
    net = default_public
    fanout = sorted((net.children_count(i) for i in range(net.size) if i != net.airdrop), reverse=True)
    leaves = sum(1 for f in fanout if f == 0)
    assert leaves > net.size * 0.5  # most accounts create nobody
    assert fanout[0] >= 50 * max(1, fanout[len(fanout) // 2])  # a few create very many


def test_merged_accounts_have_two_creation_events_around_the_merge(default_public):
    net = default_public
    assert len(net.merged) >= 6
    for index in net.merged:
        truth = net.truth(net.address(index))
        first, second = truth["creation_events"]
        merged_at = truth["merges"][0]["merged_at"]
        assert first["created_at"] < merged_at < second["created_at"]
        assert first["creator"] != second["creator"] and second["recreation"] is True
        assert truth["exists"] is True and truth["creator"] == first["creator"]
        assert truth["current_creator"] == second["creator"]
    for index in net.merged_gone:
        truth = net.truth(net.address(index))
        assert truth["exists"] is False and truth["ever_existed"] is True and len(truth["merges"]) == 1


def test_exchanges_have_10k_operations_with_only_a_few_creates(default_public):
    net = default_public
    for index in net.exchanges:
        streams, _ = net.operation_streams(net.address(index))
        ids = sorted(i for s in streams for i in s)
        assert len(ids) >= 10_000
        kinds = Counter(net.operation(i).type for i in ids)
        created_by_it = [i for i in ids if net.operation(i).type == "create_account"
                         and net.operation(i).details["funder"] == net.address(index)]
        assert 1 <= len(created_by_it) <= 5
        assert kinds["payment"] >= 10_000 - 5


def test_failed_create_ops_never_become_edges(default_public):
    net = default_public
    edges = {(c, child) for c, child, _ in net.edges()}
    cases = Counter()
    assert len(net.failed_ledger) >= 10
    for f in range(len(net.failed_ledger)):
        op = net.operation(toid(*net._failed_slot(f)))
        assert op.type == "create_account" and op.successful is False
        funder, target = net.failed_funder[f], net.failed_target[f]
        assert (funder, target) not in edges
        truth = net.truth(op.details["account"])
        assert op.details["funder"] not in [e["creator"] for e in truth["creation_events"]]
        if not truth["ever_existed"]:
            cases["ghost"] += 1
        elif truth["created_at"] > truth["failed_create_ops"][0]["at"]:
            cases["created_later_by_someone_else"] += 1
        else:
            cases["already_existed"] += 1
    assert set(cases) == {"ghost", "created_later_by_someone_else", "already_existed"}


def test_home_domains_include_hostile_strings(default_public):
    domains = {s.home_domain for s in all_core_states(default_public) if s.home_domain}
    assert any("<script>" in d for d in domains)
    assert any(len(d) >= 1_000 for d in domains)
    assert any(not d.isascii() for d in domains)
    assert any(d.endswith(".example") and d.startswith("site-") for d in domains)


def test_every_flag_combination_occurs(default_public):
    assert {s.flags for s in all_core_states(default_public)} == set(range(16))


def test_balances_span_zero_to_ten_million_and_every_hva_band(default_public):
    balances = [s.balance for s in all_core_states(default_public) if s.exists]
    assert min(balances) == 0 and max(balances) == 10_000_000 * STROOPS
    for threshold in HVA_THRESHOLDS:
        assert threshold * STROOPS in balances
        assert threshold * STROOPS - 1 in balances
    for low, high in BALANCE_BANDS:
        assert sum(1 for b in balances if low * STROOPS <= b < high * STROOPS) >= 3
    assert sum(1 for b in balances if b < HVA_THRESHOLDS[0] * STROOPS) > len(balances) * 0.8


def test_several_assets_of_both_code_lengths(default_public):
    net = default_public
    held = {n for s in all_core_states(net) for n, _ in s.trustlines}
    assets = [net.asset(n) for n in held]
    assert len(assets) >= 4
    assert {a["asset_type"] for a in assets} == {"credit_alphanum4", "credit_alphanum12"}


# ------------------------------------------------------------------ consistency of the ground truth
def test_edges_children_and_times_agree(small):
    net = small
    last_op = 0
    children = {}
    for creator, child, op_id in net.edges():
        assert op_id > last_op
        last_op = op_id
        op = net.operation(op_id)
        assert op.details["funder"] == net.address(creator) and op.details["account"] == net.address(child)
        assert op.ledger > net.creation_ledger(creator)
        children.setdefault(creator, []).append(child)
    for creator in random.Random(5).sample(sorted(children), 40):
        listed = [c for _, c, _ in net.iter_children(creator)]
        assert listed == children[creator]
        assert net.children_count(creator) == len(listed)


def test_every_operation_id_rebuilds_and_ids_are_time_ordered(small):
    ids = small.all_operation_ids()
    assert ids == sorted(set(ids))
    previous_time = ledger_close_time(1)
    for op_id in ids:
        op = small.operation(op_id)
        assert op is not None and op.id == op_id
        assert op.closed_at >= previous_time
        previous_time = op.closed_at
    for junk in (0, -5, toid(3, TX_CREATE, 1), toid(small.latest_ledger, 99, 1), toid(5, 2, 1), "12"):
        assert small.operation(junk) is None


def _expected_ids(net, address, include_failed):
    streams, failed = net.operation_streams(address)
    ids = sorted(i for s in streams for i in s)
    if include_failed:
        ids = sorted(ids + list(failed))
    floor = toid(net.elder_ledger, 0, 0)
    return [i for i in ids if i > floor]


@pytest.mark.parametrize("limit", [1, 7, 200])
def test_paging_walks_every_operation_once_in_both_orders(small, limit):
    net = small
    accounts = [net.exchanges[1], net.airdrop, net.merged[-1], 0, net.failed_funder[0], net.size + 7]
    addresses = [net.address(i) for i in accounts] + [net.address(net.total)]  # a ghost
    for address in addresses:
        for include_failed in (False, True):
            expected = _expected_ids(net, address, include_failed)
            if limit == 1 and len(expected) > 400:
                continue  # covered at larger limits
            for order in ("asc", "desc"):
                seen, cursor = [], None
                while True:
                    page = net.operation_page(address, order, cursor, limit, include_failed)
                    if not page:
                        break
                    assert len(page) <= limit
                    seen += [op.id for op in page]
                    cursor = page[-1].id
                assert seen == (expected if order == "asc" else expected[::-1])


def test_retention_hides_old_history_but_not_old_accounts():
    pruned = Network(NetworkConfig(**SMALL))
    full = Network(NetworkConfig(**{**SMALL, "retention_days": 0}))
    old = next(i for i in range(1, pruned.size) if pruned.ledgers[i] < pruned.elder_ledger and pruned.role[i] == 0)
    address = pruned.address(old)
    own_creation = toid(pruned.ledgers[old], TX_CREATE, 1)
    assert own_creation not in [op.id for op in pruned.operation_page(address, "asc", None, 200) or []]
    assert own_creation in [op.id for op in full.operation_page(address, "asc", None, 200)]
    assert pruned.state(old).exists
    assert pruned.truth(address)["creation_events"][0]["in_horizon_history"] is False
    assert full.truth(address)["creation_events"][0]["in_horizon_history"] is True


def test_missing_and_ghost_addresses_have_truth_but_no_account(small):
    ghost = small.address(small.total)  # the first failed op targets a ghost
    truth = small.truth(ghost)
    assert truth["exists"] is False and truth["kinds"] == ["ghost"] and truth["failed_create_ops"]
    missing = small.truth(small.missing_address(0))
    assert missing["kinds"] == ["missing"] and missing["failed_create_ops"] == []
    assert small.operation_streams(small.missing_address(0)) is None


def test_pick_returns_accounts_of_the_asked_kind(small):
    net = small
    for kind in ("exchange", "merged", "merged_gone", "hostile", "airdrop_child", "chain", "old", "recent"):
        picked = net.pick(kind, limit=3)["accounts"]
        assert picked, kind
        for entry in picked:
            assert kind in net.truth(entry["account"])["kinds"] or (
                kind == "recent" and "old" not in net.truth(entry["account"])["kinds"])
    rich = net.pick("hva", limit=50, min_balance=500_000 * STROOPS)["accounts"]
    assert rich and all(float(a["xlm_balance"]) >= 500_000 for a in rich)
    assert [a["account"] for a in net.pick("ordinary", 5, offset=5)["accounts"]] == \
        [a["account"] for a in net.pick("ordinary", 10)["accounts"]][5:]
    for entry in net.pick("missing", limit=3)["accounts"]:
        assert net.resolve(entry["account"]) is None
    counts = net.kind_counts()
    assert counts["airdrop_child"] == net.airdrop_size and counts["genesis"] == 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"accounts": 10}, "accounts"),
        ({"accounts": "5000"}, "accounts"),
        ({"accounts": True}, "accounts"),
        ({"airdrop_children": -1}, "airdrop_children"),
        ({"network": "futurenet"}, "network"),
        ({"retention_days": -1}, "retention_days"),
        ({"seed": -3}, "seed"),
        ({"now": dt.datetime(2025, 1, 1)}, "now"),
        ({"now": dt.datetime(2016, 1, 1, tzinfo=dt.timezone.utc)}, "now"),
    ],
)
def test_bad_configuration_is_refused_with_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as caught:
        NetworkConfig(**kwargs)
    assert caught.value.field == field


def test_bad_pick_arguments_are_refused(small):
    with pytest.raises(InvalidInput):
        small.pick("nonsense")
    with pytest.raises(InvalidInput):
        small.pick("exchange", limit=0)
    with pytest.raises(InvalidInput):
        small.pick("exchange", offset=-1)


# ------------------------------------------------------------------ sequence numbers
def test_sequence_numbers_start_at_the_creation_ledger_shifted_left_32(small):
    """stellar-core gives a new account ledgerSeq << 32 (getStartingSequenceNumber); each transaction
    it sources adds one. So sequence >> 32 is the current life's creation ledger, unless it bumped."""
    net = small
    untouched = 0
    for index in list(range(net.size)) + list(range(net.size, net.total, 37)):
        state = net.state(index)
        if index in net.bump_of:
            assert state.sequence >> 32 > state.created_ledger
            continue
        assert state.sequence >> 32 == state.created_ledger, index
        if state.last_modified_ledger == state.created_ledger:
            untouched += 1
            assert state.sequence == state.created_ledger << 32 and state.sequence_ledger is None
    assert untouched >= 10, "some accounts were never used after their creation"


def test_a_recreated_account_sequence_reflects_its_current_life(small):
    for index in small.merged:
        state = small.state(index)
        recreated = small.recreation_of[index][0]
        assert state.created_ledger == recreated and state.first_created_ledger == small.ledgers[index]
        assert state.sequence >> 32 == recreated > small.merge_of[index][0]
        truth = small.truth(small.address(index))
        assert truth["creation_ledger"] == recreated and truth["first_creation_ledger"] == small.ledgers[index]
        assert [e["starting_sequence"] for e in truth["creation_events"]] == [str(e["ledger"] << 32) for e in truth["creation_events"]]


def test_a_merged_account_keeps_its_last_sequence_number(small):
    for index in small.merged_gone:
        state = small.state(index)
        merged_at = small.merge_of[index][0]
        assert not state.exists and state.last_modified_ledger == merged_at
        # the merge is its own transaction: one sequence number past its start, and recorded from protocol 19 on
        assert state.sequence > small.ledgers[index] << 32 and state.sequence >> 32 == small.ledgers[index] < merged_at
        assert state.sequence_ledger == (merged_at if merged_at >= small.protocol19_ledger else None)
        assert state.balance == 0 and state.last_balance == small.balances[index]


def test_sequence_ledger_is_the_last_sequence_change_and_only_from_protocol_19(default_public):
    net = default_public
    present = absent_old = 0
    for index in list(range(net.size)) + list(range(net.size, net.total, 101)):
        state = net.state(index)
        if state.sequence_ledger is None:
            absent_old += state.created_ledger < net.protocol19_ledger
            continue
        present += 1
        assert net.protocol19_ledger <= state.sequence_ledger <= state.last_modified_ledger
        assert state.sequence_ledger > state.created_ledger  # an account cannot source a transaction in its creation ledger
        assert state.sequence != state.created_ledger << 32 or index in net.bump_of
    assert present > 100 and absent_old > 100, (present, absent_old)


def test_last_modified_follows_every_change_to_the_account(small):
    net = small
    for edge_creator, child, op_id in net.edges():
        assert net.state(edge_creator).last_modified_ledger >= op_id >> 32 or not net.exists(edge_creator)
    for index in range(net.size):
        assert net.state(index).last_modified_ledger <= net.latest_ledger


def test_bump_sequence_accounts(default_public):
    net = default_public
    bumped = net.pick("bump_sequence", limit=100)["accounts"]
    assert len(bumped) == len(net.bump_of) >= 10
    kinds = [set(a["kinds"]) for a in bumped]
    assert all("bump_sequence" in k for k in kinds)
    assert any("old" in k for k in kinds) and any("old" not in k for k in kinds)
    past_now = pre19 = 0
    for entry in bumped:
        address = entry["account"]
        index = net.resolve(address)[1]
        truth = net.truth(address)
        ledger, bump_to, later, change = net.bump_of[index]
        assert truth["sequence_matches_creation"] is False
        assert truth["ledger_from_sequence"] == int(truth["sequence"]) >> 32 > truth["creation_ledger"] == entry["creation_ledger"]
        assert int(truth["sequence"]) == bump_to + later
        assert truth["bump_sequence"] == {"operation_id": str(toid(ledger, 14, 1)), "ledger": ledger,
                                          "at": truth["bump_sequence"]["at"], "bump_to": str(bump_to)}
        op = net.operation(int(truth["bump_sequence"]["operation_id"]))
        assert op.type == "bump_sequence" and op.type_i == 11 and op.source_account == address
        assert op.details == {"bump_to": str(bump_to)} and op.ledger > truth["creation_ledger"]
        assert op.id in net.all_operation_ids() and op.id in [i for s in net.operation_streams(address)[0] for i in s]
        past_now += truth["ledger_from_sequence"] > net.latest_ledger
        pre19 += truth["sequence_ledger"] is None
        assert truth["sequence_ledger"] in (None, change)
    assert past_now >= 1 and pre19 >= 1
    others = net.truth(net.pick("ordinary", limit=1)["accounts"][0]["account"])
    assert others["bump_sequence"] is None and others["sequence_matches_creation"] is True


def test_truth_of_a_missing_address_has_no_sequence(small):
    truth = small.truth(small.missing_address(1))
    assert truth["sequence"] is None and truth["creation_ledger"] is None and truth["bump_sequence"] is None

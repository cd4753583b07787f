"""Horizon's response shapes (stellar/go services/horizon): accounts, operations, HAL pages,
problem+json errors, and a pruned history that starts at the elder ledger."""
from __future__ import annotations

from urllib.parse import quote

from local.simulator.codec import strkey_decode, toid
from local.simulator.network import FLAG_NAMES, Network, Operation, iso_z, ledger_close_time, stroops_to_str
from local.simulator.replies import Reply, json_reply

HAL = "application/hal+json; charset=utf-8"
PROBLEM = "application/problem+json; charset=utf-8"
ERROR_HOST = "https://stellar.org/horizon-errors/"
DEFAULT_LIMIT = 10
MAX_LIMIT = 200
MAX_TRUSTLINE_LIMIT = "922337203685.4775807"


def problem(kind: str, title: str, status: int, detail: str, extras: dict | None = None) -> Reply:
    body = {"type": ERROR_HOST + kind, "title": title, "status": status, "detail": detail}
    if extras:
        body["extras"] = extras
    return json_reply(body, status, PROBLEM)


def not_found() -> Reply:
    return problem(
        "not_found", "Resource Missing", 404,
        "The resource at the url requested was not found.  This usually occurs for one of two reasons:  "
        "The url requested is not valid, or no data in our database could be found with the parameters provided.",
    )


def bad_request(field: str, reason: str) -> Reply:
    return problem("bad_request", "Bad Request", 400, "The request you sent was invalid in some way.",
                   {"invalid_field": field, "reason": reason})


def before_history() -> Reply:
    return problem(
        "before_history", "Data Requested Is Before Recorded History", 410,
        "This horizon instance is configured to only track a portion of the stellar network's latest history. "
        "This request is asking for results prior to the recorded history known to this horizon instance.",
    )


def rate_limit_exceeded() -> Reply:
    return problem(
        "rate_limit_exceeded", "Rate Limit Exceeded", 429,
        "The rate limit for the requesting IP address is over its alloted limit.  The allowed limit and requests "
        "left per time period are communicated to clients via the http response headers 'X-RateLimit-*' headers.",
    )


def server_error() -> Reply:
    return problem(
        "server_error", "Internal Server Error", 500,
        "An error occurred while processing this request.  This is usually due to a bug within the server software.  "
        "Trying this request again may succeed if the bug is transient. Otherwise, please contact the system administrator.",
    )


def over_capacity() -> Reply:
    return problem("server_over_capacity", "Server Over Capacity", 503,
                   "This horizon server is currently overloaded.  Please wait for several minutes before trying your request again.")


def _hal(body: dict, network: Network) -> Reply:
    return json_reply(body, 200, HAL, [("Latest-Ledger", str(network.latest_ledger))])


def root(network: Network, base: str) -> Reply:
    return _hal({
        "_links": {
            "account": {"href": f"{base}/accounts/{{account_id}}", "templated": True},
            "account_transactions": {"href": f"{base}/accounts/{{account_id}}/transactions{{?cursor,limit,order}}", "templated": True},
            "operation": {"href": f"{base}/operations/{{id}}", "templated": True},
            "self": {"href": f"{base}/"},
        },
        "horizon_version": "simulated-2.32.0",
        "core_version": "stellar-core simulated",
        "ingest_latest_ledger": network.latest_ledger,
        "history_latest_ledger": network.latest_ledger,
        "history_latest_ledger_closed_at": iso_z(ledger_close_time(network.latest_ledger)),
        "history_elder_ledger": network.elder_ledger,
        "core_latest_ledger": network.latest_ledger,
        "network_passphrase": network.passphrase,
        "current_protocol_version": 22,
        "supported_protocol_version": 22,
        "core_supported_protocol_version": 22,
    }, network)


def _invalid_account(address: str) -> bool:
    return strkey_decode(address) is None


def account(network: Network, base: str, address: str) -> Reply:
    if _invalid_account(address):
        return bad_request("account_id", "Account ID must start with `G` and contain 56 alphanum characters")
    found = network.resolve(address)
    if found is None or found[0] == "ghost":
        return not_found()
    index = found[1] if found[0] == "core" else network.size + found[1]
    state = network.state(index)
    if not state.exists:
        return not_found()
    balances = []
    for number, amount in state.trustlines:
        asset = network.asset(number)
        balances.append({
            "balance": stroops_to_str(amount),
            "limit": MAX_TRUSTLINE_LIMIT,
            "buying_liabilities": "0.0000000",
            "selling_liabilities": "0.0000000",
            "last_modified_ledger": state.last_modified_ledger,
            "is_authorized": True,
            "is_authorized_to_maintain_liabilities": True,
            **asset,
        })
    balances.append({
        "balance": stroops_to_str(state.balance),
        "buying_liabilities": "0.0000000",
        "selling_liabilities": "0.0000000",
        "asset_type": "native",
    })
    link = f"{base}/accounts/{address}"
    body = {
        "_links": {
            "self": {"href": link},
            "transactions": {"href": f"{link}/transactions{{?cursor,limit,order}}", "templated": True},
            "operations": {"href": f"{link}/operations{{?cursor,limit,order}}", "templated": True},
            "payments": {"href": f"{link}/payments{{?cursor,limit,order}}", "templated": True},
            "effects": {"href": f"{link}/effects{{?cursor,limit,order}}", "templated": True},
            "offers": {"href": f"{link}/offers{{?cursor,limit,order}}", "templated": True},
            "trades": {"href": f"{link}/trades{{?cursor,limit,order}}", "templated": True},
            "data": {"href": f"{link}/data/{{key}}", "templated": True},
        },
        "id": address,
        "account_id": address,
        "sequence": str(state.sequence),
        "subentry_count": len(state.trustlines),
        "last_modified_ledger": state.last_modified_ledger,
        "last_modified_time": iso_z(ledger_close_time(state.last_modified_ledger)),
        "thresholds": {"low_threshold": 0, "med_threshold": 0, "high_threshold": 0},
        "flags": {name: bool(state.flags >> bit & 1) for bit, name in enumerate(FLAG_NAMES)},
        "balances": balances,
        "signers": [{"weight": 1, "key": address, "type": "ed25519_public_key"}],
        "data": {},
        "num_sponsoring": 0,
        "num_sponsored": 0,
        "paging_token": address,
    }
    if state.sequence_ledger is not None:
        # The ledger and close time (unix seconds, as text) of the last sequence number change; stellar-core
        # records them from protocol 19 on, and Horizon omits both for accounts unchanged since.
        body["sequence_ledger"] = state.sequence_ledger
        body["sequence_time"] = str(int(ledger_close_time(state.sequence_ledger).timestamp()))
    if state.home_domain is not None:  # Horizon omits an empty home_domain
        body["home_domain"] = state.home_domain
    if state.sponsor:
        body["sponsor"] = state.sponsor
    return _hal(body, network)


def operation_record(op: Operation, base: str) -> dict:
    op_id = str(op.id)
    record = {
        "_links": {
            "self": {"href": f"{base}/operations/{op_id}"},
            "transaction": {"href": f"{base}/transactions/{op.transaction_hash}"},
            "effects": {"href": f"{base}/operations/{op_id}/effects"},
            "succeeds": {"href": f"{base}/effects?order=desc&cursor={op_id}"},
            "precedes": {"href": f"{base}/effects?order=asc&cursor={op_id}"},
        },
        "id": op_id,
        "paging_token": op_id,
        "transaction_successful": op.successful,
        "source_account": op.source_account,
        "type": op.type,
        "type_i": op.type_i,
        "created_at": iso_z(op.closed_at),
        "transaction_hash": op.transaction_hash,
    }
    record.update(op.details)
    return record


def operation(network: Network, base: str, raw_id: str) -> Reply:
    if not raw_id.isdigit():
        return bad_request("id", "invalid value")
    op = network.operation(int(raw_id))
    if op is None:
        return not_found()
    if op.ledger < network.elder_ledger:
        return not_found()  # pruned: Horizon no longer has it
    return _hal(operation_record(op, base), network)


def _single(query: dict, name: str) -> str:
    values = query.get(name) or [""]
    return values[0]


def account_operations(network: Network, base: str, address: str, query: dict) -> Reply:
    if _invalid_account(address):
        return bad_request("account_id", "Account ID must start with `G` and contain 56 alphanum characters")
    order = _single(query, "order") or "asc"
    if order not in ("asc", "desc"):
        return bad_request("order", "order: invalid value, must be asc or desc")
    raw_limit = _single(query, "limit")
    if raw_limit == "":
        limit = DEFAULT_LIMIT
    else:
        try:
            limit = int(raw_limit)
        except ValueError:
            return bad_request("limit", "unparseable value")
        if limit <= 0:
            return bad_request("limit", "invalid limit: non-positive value provided")
        if limit > MAX_LIMIT:
            return bad_request("limit", f"invalid limit: value provided that is over limit max of {MAX_LIMIT}")
    raw_failed = _single(query, "include_failed")
    if raw_failed not in ("", "true", "false"):
        return bad_request("include_failed", "Filter should be true or false")
    include_failed = raw_failed == "true"
    raw_cursor = _single(query, "cursor")
    cursor: int | None
    if raw_cursor == "":
        cursor = None
    elif raw_cursor == "now":
        cursor = toid(network.latest_ledger + 1, 0, 0)
    else:
        try:
            cursor = int(raw_cursor)
        except ValueError:
            return bad_request("cursor", "invalid value")
        if cursor < 0:
            return bad_request("cursor", f"the cursor {cursor} is a negative number: ")
    # An ascending query before history starts at the elder ledger; a descending one is gone (410).
    if order == "desc" and cursor is not None and cursor <= toid(network.elder_ledger, 0, 0):
        return before_history()
    ops = network.operation_page(address, order, cursor, limit, include_failed)
    if ops is None:
        return not_found()
    records = [operation_record(op, base) for op in ops]
    path = f"{base}/accounts/{address}/operations"
    extra = "&include_failed=true" if include_failed else ""

    def href(page_cursor: str, page_order: str) -> dict:
        return {"href": f"{path}?cursor={quote(page_cursor)}&limit={limit}&order={page_order}{extra}"}

    current = raw_cursor
    reverse = "desc" if order == "asc" else "asc"
    links = {
        "self": href(current, order),
        "next": href(records[-1]["paging_token"] if records else current, order),
        "prev": href(records[0]["paging_token"] if records else current, reverse),
    }
    return _hal({"_links": links, "_embedded": {"records": records}}, network)

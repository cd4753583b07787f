"""Stellar Expert's shapes (stellar-expert/stellar-expert-explorer api/): the account summary
with creator/created, and the Open Directory (entries, tags, blocked domains).

Errors are {"error": "<message>", "status": n}. An account's creator is its first creator:
Stellar Expert keeps one record per address, so a re-created account still shows the original.
"""
from __future__ import annotations

from urllib.parse import quote

from common.domain import NETWORKS
from local.simulator.codec import strkey_decode
from local.simulator.network import BLOCKED_DOMAINS, Network, ledger_close_time
from local.simulator.replies import Reply, json_reply

DIRECTORY_TAGS = (
    ("exchange", "Centralized exchange account"),
    ("anchor", "Operational account of an anchor"),
    ("issuer", "Well known asset issuer account"),
    ("wallet", "Shared account that belongs to a wallet"),
    ("custodian", "Reserved, custodian account, or cold wallet"),
    ("malicious", "Account involved in theft/scam/spam/phishing"),
    ("unsafe", "Obsolete or potentially dangerous account"),
    ("personal", "Personal signing key or account address"),
    ("sdf", "Account under the custody of SDF"),
    ("memo-required", "Destination requires transaction memo"),
    ("airdrop", "Airdrop distribution account"),
    ("obsolete-inflation-pool", "Inflation pool distribution account (obsolete)"),
)
TAG_NAMES = {name for name, _ in DIRECTORY_TAGS}


def error(status: int, message: str) -> Reply:
    return json_reply({"error": message, "status": status}, status)


def bad_request(details: str) -> Reply:
    return error(400, f"Bad request. {details}")


def not_found(details: str = "") -> Reply:
    return error(404, ("Not found. " + details).strip())


def too_many_requests() -> Reply:
    return error(429, "Too many requests.")


def internal_error() -> Reply:
    return error(500, "Internal server error")


def _activity(index: int, multiplier: float = 1) -> str:
    if index > multiplier * 1000:
        return "very high"
    if index > multiplier * 100:
        return "high"
    if index > multiplier * 10:
        return "moderate"
    if index > 0:
        return "low"
    return "none"


def _asset_name(asset: dict) -> str:
    return f"{asset['asset_code']}-{asset['asset_issuer']}-{1 if asset['asset_type'] == 'credit_alphanum4' else 2}"


def account(networks: dict[str, Network], network_name: str, address: str) -> Reply:
    if network_name not in NETWORKS:
        return bad_request("Invalid parameter: network.")
    if strkey_decode(address) is None:
        return bad_request("Invalid parameter: account.")
    network = networks[network_name]
    found = network.resolve(address)
    if found is None or found[0] == "ghost":
        return not_found("Account was not found on the ledger. Check if you specified account address correctly.")
    index = found[1] if found[0] == "core" else network.size + found[1]
    state = network.state(index)
    events = network.creation_events(index)
    body: dict = {"account": address, "created": int(ledger_close_time(state.first_created_ledger).timestamp())}
    if events:
        body["creator"] = events[0]["creator"]
    if not state.exists:
        body["deleted"] = True
    body["payments"] = state.payments
    body["trades"] = 0
    if state.payments:
        body["activity"] = {"yearly": _activity(state.payments, 5), "monthly": _activity(state.payments / 12)}
        body["assets"] = ["XLM"] + [_asset_name(network.asset(number)) for number, _ in state.trustlines]
    else:
        body["activity"] = {"yearly": "none", "monthly": "none"}
    return json_reply(body)


# ------------------------------------------------------------------ Open Directory
def directory_index(networks: dict[str, Network]) -> dict[str, dict]:
    """address -> entry. The real directory is one list; here both networks' notable accounts."""
    out = {}
    for network in networks.values():
        for index, entry in network.directory.items():
            address = network.address(index)
            out[address] = {"address": address, "name": entry["name"], "domain": entry["domain"], "tags": list(entry["tags"])}
    return out


def directory_entry(index: dict[str, dict], address: str) -> Reply:
    if strkey_decode(address) is None:
        return bad_request("Invalid parameter: address.")
    entry = index.get(address)
    return json_reply(dict(entry) if entry else {})  # not listed: 200 with an empty object


def _limit(raw: str, default: int, maximum: int) -> int:
    try:
        value = int(raw or 0)
    except ValueError:
        return default
    if value <= 0:
        return default
    return min(value, maximum)


def _order(raw: str) -> str:
    return "desc" if raw in ("desc", "-1") else "asc"


def _paged(base: str, path: str, params: dict, records: list[dict], order: str, limit: int, cursor: str) -> Reply:
    def link(link_order: str, link_cursor: str) -> dict:
        parts = []
        for key, value in {**params, "order": link_order, "limit": limit, "cursor": link_cursor}.items():
            if isinstance(value, list):
                parts += [f"{quote(key)}[]={quote(str(v))}" for v in value]
            elif value not in (None, ""):
                parts.append(f"{quote(key)}={quote(str(value))}")
        return {"href": f"{path}?{'&'.join(parts)}"}

    reverse = "desc" if order == "asc" else "asc"
    links = {"self": link(order, cursor)}
    if records:
        links["prev"] = link(reverse, records[0]["paging_token"])
        links["next"] = link(order, records[-1]["paging_token"])
    else:
        links["prev"] = link(reverse, cursor)
        links["next"] = link(order, cursor)
    return json_reply({"_links": links, "_embedded": {"records": records}})


def _multi(query: dict, name: str) -> list[str] | None:
    values = (query.get(name + "[]") or []) + (query.get(name) or [])
    return values or None


def directory_list(index: dict[str, dict], path: str, query: dict) -> Reply:
    addresses = _multi(query, "address")
    tags = _multi(query, "tag")
    search = (query.get("search") or [""])[0]
    if addresses is not None and len(addresses) > 50:
        return bad_request('Too many "address" conditions. Maximum 50 searched addresses allowed.')
    if tags is not None:
        for tag in tags:
            if tag not in TAG_NAMES:
                return bad_request(f'Invalid "tag" parameter value. Unknown tag: "{tag}".')
        if len(tags) > 20:
            return bad_request('Too many "tag" conditions. Maximum 20 searched tags allowed.')
    if search and not 3 <= len(search) <= 60:
        return bad_request('Invalid "search" parameter value. Expected a string (3-60 characters).')
    order = _order((query.get("order") or [""])[0])
    limit = _limit((query.get("limit") or [""])[0], 50 if addresses else 10, 200)
    cursor = (query.get("cursor") or [""])[0]
    entries = sorted(index.values(), key=lambda e: e["address"], reverse=order == "desc")
    if addresses is not None:
        wanted = set(addresses)
        entries = [e for e in entries if e["address"] in wanted]
    if tags is not None:
        entries = [e for e in entries if set(e["tags"]) & set(tags)]
    if search:
        needle = search.lower()
        entries = [e for e in entries if needle in e["address"].lower() or needle in (e["name"] or "").lower()
                   or needle in (e["domain"] or "").lower()]
    if cursor:
        entries = [e for e in entries if (e["address"] > cursor if order == "asc" else e["address"] < cursor)]
    records = [{"address": e["address"], "paging_token": e["address"], "name": e["name"], "domain": e["domain"],
                "tags": e["tags"]} for e in entries[:limit]]
    params = {"address": addresses, "tag": tags, "search": search}
    return _paged("", path, params, records, order, limit, cursor)


def directory_tags() -> Reply:
    return json_reply([{"name": name, "description": description} for name, description in DIRECTORY_TAGS])


def is_domain_blocked(domain: str) -> bool:
    """The domain itself or any parent domain (above the TLD) is on the list."""
    domain = domain.lower()
    options = [domain]
    while "." in domain:
        domain = domain[domain.index(".") + 1:]
        if "." not in domain:
            break
        options.append(domain)
    return any(option in BLOCKED_DOMAINS for option in options)


def blocked_domain(domain: str) -> Reply:
    return json_reply({"domain": domain, "blocked": is_domain_blocked(domain)})


def blocked_domains(path: str, query: dict) -> Reply:
    order = _order((query.get("order") or [""])[0])
    limit = _limit((query.get("limit") or [""])[0], 1000, 1000)
    cursor = (query.get("cursor") or [""])[0]
    search = (query.get("search") or [""])[0].lower().strip()
    domains = sorted(BLOCKED_DOMAINS, reverse=order == "desc")
    if cursor:
        domains = [d for d in domains if (d > cursor if order == "asc" else d < cursor)]
    if search:
        domains = [d for d in domains if search in d]
    records = [{"domain": d, "paging_token": d} for d in domains[:limit]]
    return _paged("", path, {"search": search}, records, order, limit, cursor)

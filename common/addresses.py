"""What a user typed as an account: a G… account, an M… muxed account (→ its G… account),
or something else that gets a clear, specific refusal. A secret seed is never echoed."""
from __future__ import annotations

from common.domain import InvalidInput, is_valid_account_id

MAX_INPUT_CHARS = 256

_KIND_BY_PREFIX = {
    "S": ("secret_seed", "that is a secret seed (S…), never share it; enter the public account id (G…)"),
    "C": ("contract_id", "that is a contract id (C…), not an account; enter an account id (G…)"),
    "T": ("pre_auth_tx", "that is a pre-authorized transaction hash (T…), not an account"),
    "X": ("sha256_hash", "that is a hash signer (X…), not an account"),
    "P": ("signed_payload", "that is a signed-payload signer (P…), not an account"),
    "L": ("liquidity_pool", "that is a liquidity pool id (L…), not an account"),
    "B": ("claimable_balance", "that is a claimable balance id (B…), not an account"),
}


def normalize_account_input(raw: object, field: str = "account") -> str:
    """Return the G… account id for user input, or raise InvalidInput (never echoing the input)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidInput("missing_account", "enter a Stellar account id (G…, 56 characters)", field)
    if not isinstance(raw, str):
        raise InvalidInput("invalid_account", "the account must be text", field)
    if len(raw) > MAX_INPUT_CHARS:
        raise InvalidInput("input_too_long", f"the account must be at most {MAX_INPUT_CHARS} characters", field)
    text = raw.strip()
    if text[:1] == "G":
        if is_valid_account_id(text):
            return text
        raise InvalidInput("invalid_checksum" if len(text) == 56 else "invalid_account",
                           "not a valid Stellar account id: check every character (G…, 56 characters)", field)
    if text[:1] == "M":
        from stellar_sdk import MuxedAccount
        from stellar_sdk.exceptions import SdkError

        try:
            return MuxedAccount.from_account(text).account_id
        except (SdkError, ValueError):
            raise InvalidInput("invalid_checksum", "not a valid muxed account (M…): check every character", field) from None
    kind = _KIND_BY_PREFIX.get(text[:1])
    if kind and len(text) >= 56:
        raise InvalidInput("wrong_key_kind", kind[1], field)
    raise InvalidInput("invalid_account", "not a Stellar account id (G…, 56 characters)", field)

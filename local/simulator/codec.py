"""Account ids and operation ids of the simulated networks.

Addresses are not stored: index -> address is a keyed bijection (a Feistel permutation of the
index plus a keyed tag), so a 1,000,000-account network needs no address table and any address
decodes back to its index in O(1). Addresses of one network do not decode on the other.
"""
from __future__ import annotations

import base64
import binascii
import hashlib

GENESIS_ACCOUNT = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"

_ED25519_VERSION = bytes([6 << 3])  # StrKey version byte of a G... address
_MASK32 = 0xFFFFFFFF
_ROUNDS = 6


_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SHIFTS = tuple(range(275, -1, -5))  # 35 bytes = 280 bits = 56 base32 digits, no padding


def strkey_encode(payload: bytes) -> str:
    """StrKey G-address of a 32-byte ed25519 public key (CRC16-XModem, little endian).
    Base32 by hand: the standard library's is pure Python and several times slower."""
    data = _ED25519_VERSION + payload
    n = int.from_bytes(data + binascii.crc_hqx(data, 0).to_bytes(2, "little"), "big")
    return "".join([_BASE32[(n >> shift) & 31] for shift in _SHIFTS])


def strkey_decode(address: str) -> bytes | None:
    """The 32-byte payload of a valid G-address, else None."""
    if not isinstance(address, str) or len(address) != 56 or address[0] != "G":
        return None
    try:
        raw = base64.b32decode(address)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 35 or raw[:1] != _ED25519_VERSION:
        return None
    if binascii.crc_hqx(raw[:33], 0).to_bytes(2, "little") != raw[33:]:
        return None
    return raw[1:33]


def _round(value: int, key: int) -> int:
    value = ((value ^ key) * 0x9E3779B1) & _MASK32
    value ^= value >> 15
    value = (value * 0x85EBCA77) & _MASK32
    return value ^ (value >> 13)


class AddressCodec:
    """Keyed index <-> address mapping for one network of one seed."""

    def __init__(self, key: bytes):
        self._key = hashlib.blake2b(key, digest_size=32).digest()
        self._round_keys = [
            int.from_bytes(hashlib.blake2b(self._key + bytes([r]), digest_size=4).digest(), "big")
            for r in range(_ROUNDS)
        ]

    def _permute(self, index: int) -> int:
        left, right = index >> 32, index & _MASK32
        for key in self._round_keys:
            left, right = right, left ^ _round(right, key)
        return (left << 32) | right

    def _unpermute(self, value: int) -> int:
        left, right = value >> 32, value & _MASK32
        for key in reversed(self._round_keys):
            left, right = right ^ _round(left, key), left
        return (left << 32) | right

    def _tag(self, head: bytes) -> bytes:
        return hashlib.blake2b(head, key=self._key, digest_size=24).digest()

    def encode(self, index: int) -> str:
        if index == 0:
            return GENESIS_ACCOUNT
        head = self._permute(index).to_bytes(8, "big")
        return strkey_encode(head + self._tag(head))

    def decode(self, address: str) -> int | None:
        """The index an address encodes on this network, or None (not one of ours)."""
        if address == GENESIS_ACCOUNT:
            return 0
        payload = strkey_decode(address)
        if payload is None:
            return None
        head = payload[:8]
        if payload[8:] != self._tag(head):
            return None
        index = self._unpermute(int.from_bytes(head, "big"))
        return index if index > 0 else None


# Operation ids follow Horizon's TOID layout: 32 bits ledger, 20 bits transaction order,
# 12 bits operation index. Ids therefore increase with time, as paging tokens must.
TX_BITS = 20
OP_BITS = 12


def toid(ledger: int, tx_order: int, op_index: int) -> int:
    return (ledger << 32) | (tx_order << OP_BITS) | op_index


def split_toid(value: int) -> tuple[int, int, int]:
    return value >> 32, (value >> OP_BITS) & ((1 << TX_BITS) - 1), value & ((1 << OP_BITS) - 1)


def mix64(*parts: int) -> int:
    """Deterministic 64-bit hash of integers (splitmix64 chain): per-item pseudo-randomness."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
        value = value * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 29
    return value

// Client-side validation of what a visitor types as an account. It mirrors the server
// (common/addresses.py normalize_account_input and common/domain.py validate_network): the same
// codes and the same words, shown before any request is sent.

export const NETWORKS = Object.freeze(["public", "testnet"]);
export const MAX_INPUT_CHARS = 256;

export const MESSAGES = Object.freeze({
  missing_account: "enter a Stellar account id (G…, 56 characters)",
  input_too_long: `the account must be at most ${MAX_INPUT_CHARS} characters`,
  invalid_checksum: "not a valid Stellar account id: check every character (G…, 56 characters)",
  invalid_muxed: "not a valid muxed account (M…): check every character",
  invalid_account: "not a Stellar account id (G…, 56 characters)",
  invalid_network: `network must be one of ${NETWORKS.join(", ")}`,
});

export const KIND_BY_PREFIX = Object.freeze({
  S: "that is a secret seed (S…), never share it; enter the public account id (G…)",
  C: "that is a contract id (C…), not an account; enter an account id (G…)",
  T: "that is a pre-authorized transaction hash (T…), not an account",
  X: "that is a hash signer (X…), not an account",
  P: "that is a signed-payload signer (P…), not an account",
  L: "that is a liquidity pool id (L…), not an account",
  B: "that is a claimable balance id (B…), not an account",
});

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ACCOUNT_RE = /^G[A-Z2-7]{55}$/;
const VERSION_ACCOUNT_ID = 6 << 3; // 'G'
const VERSION_MUXED_ACCOUNT = 12 << 3; // 'M'
const MUXED_RE = /^M[A-Z2-7]{68}$/;

function crc16xmodem(bytes) {
  let crc = 0x0000;
  for (const byte of bytes) {
    let code = (crc >>> 8) & 0xff;
    code ^= byte & 0xff;
    code ^= code >>> 4;
    crc = (crc << 8) & 0xffff;
    crc ^= code;
    code = (code << 5) & 0xffff;
    crc ^= code;
    code = (code << 7) & 0xffff;
    crc ^= code;
  }
  return crc & 0xffff;
}

function base32Decode(text) {
  const out = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const idx = ALPHABET.indexOf(ch);
    if (idx < 0) return null;
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  // Leftover bits must be zero padding (canonical encoding).
  if (bits > 0 && (value & ((1 << bits) - 1)) !== 0) return null;
  return Uint8Array.from(out);
}

function base32Encode(bytes) {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** True when `account` is a G... StrKey with a valid version byte and CRC16 checksum. */
export function isValidAccountId(account) {
  if (typeof account !== "string" || !ACCOUNT_RE.test(account)) return false;
  const raw = base32Decode(account);
  if (!raw || raw.length !== 35 || raw[0] !== VERSION_ACCOUNT_ID) return false;
  const payload = raw.subarray(0, 33);
  const expected = crc16xmodem(payload);
  const actual = raw[33] | (raw[34] << 8);
  return expected === actual;
}

/** Encode 32 bytes of ed25519 public key as a G... account id (fixtures and tests). */
export function encodeAccountId(key32) {
  if (!(key32 instanceof Uint8Array) || key32.length !== 32) throw new TypeError("need 32 bytes");
  const payload = new Uint8Array(33);
  payload[0] = VERSION_ACCOUNT_ID;
  payload.set(key32, 1);
  const crc = crc16xmodem(payload);
  const full = new Uint8Array(35);
  full.set(payload, 0);
  full[33] = crc & 0xff;
  full[34] = (crc >>> 8) & 0xff;
  return base32Encode(full);
}

/** The G… account inside an M… muxed account (SEP-23: key then 8-byte id), or null if invalid. */
export function muxedToAccountId(muxed) {
  if (typeof muxed !== "string" || !MUXED_RE.test(muxed)) return null;
  const raw = base32Decode(muxed);
  if (!raw || raw.length !== 43 || raw[0] !== VERSION_MUXED_ACCOUNT) return null;
  const expected = crc16xmodem(raw.subarray(0, 41));
  if (expected !== (raw[41] | (raw[42] << 8))) return null;
  return encodeAccountId(raw.slice(1, 33));
}

function refuse(code, message, field = "account") {
  return { ok: false, error: { code, message, field } };
}

/**
 * What the visitor typed -> {ok: true, account: "G…"} or {ok: false, error: {code, message, field}}
 * with the server's codes and words (common/addresses.py). The input is never echoed.
 */
export function normalizeAccountInput(raw) {
  if (raw === null || raw === undefined || (typeof raw === "string" && !raw.trim())) {
    return refuse("missing_account", MESSAGES.missing_account);
  }
  if (typeof raw !== "string") return refuse("invalid_account", "the account must be text");
  if (Array.from(raw).length > MAX_INPUT_CHARS) return refuse("input_too_long", MESSAGES.input_too_long);
  const text = raw.trim();
  const first = text.slice(0, 1);
  if (first === "G") {
    if (isValidAccountId(text)) return { ok: true, account: text };
    return refuse(text.length === 56 ? "invalid_checksum" : "invalid_account", MESSAGES.invalid_checksum);
  }
  if (first === "M") {
    const account = muxedToAccountId(text);
    return account ? { ok: true, account } : refuse("invalid_checksum", MESSAGES.invalid_muxed);
  }
  if (KIND_BY_PREFIX[first] && text.length >= 56) return refuse("wrong_key_kind", KIND_BY_PREFIX[first]);
  return refuse("invalid_account", MESSAGES.invalid_account);
}

/**
 * Validate the search form: {ok: true, account, network} or {ok: false, error} (server shape).
 */
export function validateSearch(accountInput, network) {
  if (!NETWORKS.includes(network)) return refuse("invalid_network", MESSAGES.invalid_network, "network");
  const result = normalizeAccountInput(accountInput);
  return result.ok ? { ok: true, account: result.account, network } : result;
}

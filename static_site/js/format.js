// Pure formatting helpers. They return strings; callers render them with textContent / .text().

const GROUP = /\B(?=(\d{3})+(?!\d))/g;

/** "1234567" -> "1,234,567" (integers, exact). */
export function groupDigits(intText) {
  return String(intText).replace(GROUP, ",");
}

/** A count, comma-grouped: 99900 -> "99,900". */
export function formatCount(n) {
  const v = Number(n);
  if (!Number.isFinite(v)) return "—";
  return groupDigits(Math.trunc(v).toString());
}

/**
 * An XLM balance from its decimal string ("12345678.1234500") without going through floats:
 * "12,345,678.12345". null/undefined/"" -> "—". Non-numeric input is returned as "—" too.
 */
export function formatXlm(balance) {
  if (balance === null || balance === undefined || balance === "") return "—";
  const text = String(balance).trim();
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) {
    const asNumber = Number(text);
    if (!Number.isFinite(asNumber)) return "—";
    return formatXlm(asNumber.toFixed(7));
  }
  const [, sign, intPart, frac = ""] = m;
  const intClean = intPart.replace(/^0+(?=\d)/, "");
  const fracClean = frac.slice(0, 7).replace(/0+$/, "");
  return `${sign}${groupDigits(intClean)}${fracClean ? `.${fracClean}` : ""}`;
}

/** "GABCDEFG...WXYZ" -> "GABC…WXYZ". */
export function shortAccount(account, head = 4, tail = 4) {
  if (typeof account !== "string") return "—";
  if (account.length <= head + tail + 1) return account;
  return `${account.slice(0, head)}…${account.slice(-tail)}`;
}

/** ISO timestamp -> "2019-11-03 16:36 UTC"; bad or empty -> "—". */
export function formatDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

/** Flags object ({auth_required: true, ...}), list or bit-integer -> "auth_required, auth_revocable" or "none". */
export function formatFlags(flags) {
  const names = ["auth_required", "auth_revocable", "auth_immutable", "auth_clawback_enabled"];
  if (flags === null || flags === undefined) return "—";
  if (typeof flags === "number") {
    const on = names.filter((_, i) => flags & (1 << i));
    return on.length ? on.join(", ") : "none";
  }
  if (Array.isArray(flags)) return flags.length ? flags.map(String).join(", ") : "none";
  if (typeof flags === "object") {
    const on = Object.keys(flags)
      .filter((k) => flags[k] === true)
      .sort();
    return on.length ? on.join(", ") : "none";
  }
  return String(flags);
}

/** Assets list -> "USD:GABC…, yXLM:GDEF…" (at most `max`, then "+N"). */
export function formatAssets(assets, max = 4) {
  if (!Array.isArray(assets) || assets.length === 0) return "none";
  const parts = assets.slice(0, max).map((a) => {
    if (a && typeof a === "object") {
      if (a.asset_type === "native") return "XLM";
      const code = a.asset_code ?? a.code ?? "?";
      const issuer = a.asset_issuer ?? a.issuer;
      return issuer ? `${code}:${shortAccount(issuer)}` : String(code);
    }
    return String(a);
  });
  return assets.length > max ? `${parts.join(", ")} +${assets.length - max}` : parts.join(", ");
}

/** Shorten any string for display (labels); the full text stays in tooltips. Counts code points. */
export function truncate(text, max = 24) {
  if (text === null || text === undefined) return "";
  const chars = Array.from(String(text));
  return chars.length > max ? `${chars.slice(0, max - 1).join("")}…` : chars.join("");
}

/**
 * Make an upstream string safe to show as one line of text: control characters (C0, C1, and the
 * bidirectional overrides/isolates that can reorder what a reader sees) become visible escapes.
 * This is display hygiene on top of textContent, which already keeps markup inert.
 */
export function displayText(value) {
  if (value === null || value === undefined || value === "") return "—";
  return String(value).replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const hex = c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
    return `\\u${hex}`;
  });
}

/** Duration in ms -> "850 ms" / "3.2 s" / "2 min 5 s" / "25 h 3 min" / "3 d 4 h". */
export function formatDuration(ms) {
  const v = Number(ms);
  if (!Number.isFinite(v) || v < 0) return "—";
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60000) return `${(v / 1000).toFixed(1)} s`;
  const totalS = Math.round(v / 1000);
  if (totalS < 3600) return `${Math.floor(totalS / 60)} min ${totalS % 60} s`;
  const totalMin = Math.floor(totalS / 60);
  if (totalMin < 48 * 60) return `${Math.floor(totalMin / 60)} h ${totalMin % 60} min`;
  const totalH = Math.floor(totalMin / 60);
  return `${Math.floor(totalH / 24)} d ${totalH % 24} h`;
}

/** USD amount string/number -> "$1,234.57". */
export function formatUsd(value) {
  const v = Number(value);
  if (!Number.isFinite(v)) return "—";
  const [intPart, frac] = Math.abs(v).toFixed(2).split(".");
  return `${v < 0 ? "-" : ""}$${groupDigits(intPart)}.${frac}`;
}

/**
 * An account's labels as [label, text] rows (plain text, hostile text made visible): Stellar
 * Expert's directory name and what the home domain's stellar.toml says about the account.
 */
export function labelFacts(d) {
  const rows = [];
  if (!d || typeof d !== "object") return rows;
  if (typeof d.directory_name === "string" && d.directory_name) rows.push(["Directory name", truncate(displayText(d.directory_name), 80)]);
  if (typeof d.toml_org_name === "string" && d.toml_org_name) {
    const listed = d.toml_lists_account === true ? "lists this account" : d.toml_lists_account === false ? "does not list this account" : null;
    const org = truncate(displayText(d.toml_org_name), 80);
    rows.push(["stellar.toml", listed ? `${org} (${listed})` : org]);
  }
  return rows;
}

const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

/** True for a full ISO 8601 date-time string ("2026-12-07T03:42:46.607000Z"); dates alone are not. */
export function isIsoDateTime(value) {
  return typeof value === "string" && ISO_DATETIME.test(value) && !Number.isNaN(new Date(value).getTime());
}

/** ISO timestamp -> "2026-12-07 03:42:46 UTC" (seconds, no fraction); bad or empty -> "—". */
export function formatTimestamp(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

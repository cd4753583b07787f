#!/usr/bin/env bash
# Offline checks of terraform/: formatting (when the terraform binary is present) and checkov with
# StellarMap's custom policies. Exits non-zero on any failed check.
#
#   bash terraform/check.sh                # run the checks
#   bash terraform/check.sh --ensure-venv  # only create the checkov venv (used by the tests)
#
# checkov pins old versions of libraries the project also uses, so it lives in its own venv under
# .cache/checkov-venv (created on first use from PyPI; pip's cache makes re-creation fast).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKOV_VERSION="3.3.30"
VENV="${CHECKOV_VENV:-$ROOT/.cache/checkov-venv}"
PYTHON="${PYTHON:-python3}"
CUSTOM_POLICIES=(CKV_STELLARMAP_1 CKV_STELLARMAP_2 CKV_STELLARMAP_3 CKV_STELLARMAP_4 CKV_STELLARMAP_5)

ensure_venv() {
  if [[ -x "$VENV/bin/checkov" ]] && "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
    return 0
  fi
  echo "check.sh: installing checkov $CHECKOV_VERSION into $VENV" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
}

ensure_venv
if [[ "${1:-}" == "--ensure-venv" ]]; then
  exit 0
fi

cd "$ROOT"

if command -v terraform >/dev/null 2>&1; then
  echo "== terraform fmt -check"
  TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -diff -recursive terraform
else
  echo "== terraform fmt: skipped, no terraform binary on PATH (the HCL is still parsed by the pytest suite)"
fi

echo "== checkov"
"$VENV/bin/checkov" -d terraform --skip-download \
  --external-checks-dir terraform/checkov_policies \
  --framework terraform --quiet

# checkov only logs a custom policy that fails to import, so prove each one ran.
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
"$VENV/bin/checkov" -d terraform --skip-download \
  --external-checks-dir terraform/checkov_policies \
  --framework terraform -o json >"$report" 2>/dev/null || true
"$VENV/bin/python" - "$report" "${CUSTOM_POLICIES[@]}" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
results = report["results"]
ran = {c["check_id"] for key in ("passed_checks", "failed_checks", "skipped_checks") for c in results[key]}
missing = [p for p in sys.argv[2:] if p not in ran]
summary = report["summary"]
print(f"checkov summary - passed={summary['passed']} failed={summary['failed']} skipped={summary['skipped']}")
if missing:
    sys.exit(f"check.sh: custom policies did not run (import error?): {', '.join(missing)}")
if summary["failed"] or summary["parsing_errors"]:
    sys.exit("check.sh: checkov reported failures")
PY
echo "terraform checks: OK"

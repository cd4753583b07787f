"""StellarMap's custom checkov policies (loaded by terraform/check.sh with --external-checks-dir)."""

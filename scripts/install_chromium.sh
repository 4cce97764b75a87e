#!/bin/sh
# Headless Chromium for the report test (tests/test_report.py); Debian's package, run as root in CI.
set -e
command -v chromium >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
chromium --version

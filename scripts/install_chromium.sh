#!/bin/sh
# Headless Chromium for the report test (tests/test_report.py); Debian's package, run as root by CI's .ci/run.
# The tests never run this script: without Chromium the render test skips.
set -e
command -v chromium >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
chromium --version

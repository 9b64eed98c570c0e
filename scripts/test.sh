#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine, then runs it.
# This is the README's test command and what CI runs (.ci/run). Fails when any test fails,
# and never exits 0 when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v tor >/dev/null || need_apt+=(tor)
command -v curl >/dev/null || need_apt+=(curl)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nft >/dev/null || need_apt+=(nftables)
command -v gcc >/dev/null || need_apt+=(gcc)
[ -f /usr/include/openssl/evp.h ] || need_apt+=(libssl-dev)  # the C cell kernels (zmesh/_accel/cell_kernels.c)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "== not root: tests needing ${need_apt[*]} will be skipped"
  fi
fi

echo "== installing zmesh with its test extra"
python3 -m pip install -q -e '.[test]'
if [ -f worker/package.json ]; then
  echo "== installing the Worker's npm packages"
  (cd worker && npm install --no-audit --no-fund --silent)
fi

echo "== lint and types"
python3 -m ruff check zmesh
python3 -m mypy

echo "== conformance"
python3 -m conformance all

echo "== tests"
set +e
python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "no tests ran: that is a failure" >&2
  exit 1
fi
exit "$rc"

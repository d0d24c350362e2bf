#!/usr/bin/env bash
# System packages two tests need, from the Debian packages; does nothing where they are installed.
# - chromium: the replay's browser test (tests/test_replay_browser.py), driven by Playwright for
#   Python through its executable_path (Playwright's own browser download is not reachable here);
# - faketime: the test that a seeded game does not depend on the date (tests/test_moon_phase.py).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo ".ci/system-deps.sh: missing ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null

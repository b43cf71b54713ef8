#!/usr/bin/env bash
# Browser tests drive Debian's Chromium through Playwright (Playwright's own
# browser download cannot work here). Install it if it is missing.
set -eu
if command -v chromium >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "browser: installing Debian's chromium for the browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "browser: chromium is missing; install it (apt-get install -y chromium)" >&2
  exit 1
fi

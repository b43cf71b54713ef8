#!/usr/bin/env bash
# The webhook benchmark (bench/webhook_flow.py) loads the platform with wrk,
# from Debian's packages; its answer check is tested in make test. Install it
# if it is missing.
set -eu
if command -v wrk >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "wrk: installing Debian's wrk for the webhook benchmark"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
else
  echo "wrk: wrk is missing; install it (apt-get install -y wrk)" >&2
  exit 1
fi

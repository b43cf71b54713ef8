#!/usr/bin/env bash
# Browser tests drive Debian's Chromium through Playwright (Playwright's own
# browser download cannot work here). Install it if it is missing.
exec bash "$(dirname "$0")/need.sh" chromium chromium "the browser tests"

#!/usr/bin/env bash
# The webhook benchmark (bench/webhook_flow.py) loads the platform with wrk,
# from Debian's packages; its answer check is tested in make test. Install it
# if it is missing.
exec bash "$(dirname "$0")/need.sh" wrk wrk "the webhook benchmark"

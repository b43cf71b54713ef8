#!/usr/bin/env bash
# Make sure a program that `make test` or the benchmarks use is installed:
# install its Debian package if it is missing (as root, with apt-get), or say
# how. Usage: need.sh PROGRAM PACKAGE WHAT-NEEDS-IT
set -eu
program=$1 package=$2 needed_by=$3
if command -v "$program" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "$program: installing Debian's $package for $needed_by"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
else
  echo "$program: $program is missing; install it (apt-get install -y $package)" >&2
  exit 1
fi

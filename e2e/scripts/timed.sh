#!/usr/bin/env bash
# Runs a command and appends "<seconds>\t<name>" to target/stage-times.txt, keeping its exit code.
#
#   e2e/scripts/timed.sh NAME COMMAND [ARGUMENT...]
set -uo pipefail
name=${1:?usage: timed.sh NAME COMMAND...}
shift
started=$(date +%s)
"$@"
status=$?
mkdir -p target
printf '%s\t%s%s\n' "$(( $(date +%s) - started ))" "$name" "$([ $status -eq 0 ] || echo " (failed)")" >> target/stage-times.txt
exit $status

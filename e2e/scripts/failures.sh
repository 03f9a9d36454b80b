#!/usr/bin/env bash
# Prints, last in `make test`'s output, which tests failed and the first lines of each panic, so
# that the tail of a CI log (often all that is kept) names the failure.
#
#   e2e/scripts/failures.sh target/test-output.log
set -euo pipefail
log=${1:?usage: failures.sh CARGO_TEST_OUTPUT}
[ -f "$log" ] || { echo "no test output at $log"; exit 0; }
failed=$(grep -E '^test .* \.\.\. FAILED$' "$log" || true)
crashed=$(grep -E '^error: (test|doctest) failed, to rerun pass' "$log" || true)
if [ -z "$failed" ] && [ -z "$crashed" ]; then
  exit 0
fi
printf '\nFailed tests:\n'
[ -n "$failed" ] && printf '%s\n' "$failed" | sed -E 's/^test (.*) \.\.\. FAILED$/  \1/'
[ -n "$crashed" ] && printf '%s\n' "$crashed" | sed -E 's/^error: (test|doctest) failed, to rerun pass /  binary: /'
printf '\nFirst lines of each panic or error:\n'
# The panic line and the two after it (the message) per failing thread, and compile errors (a
# doctest that does not build; a full disk), at most 40 lines in all.
grep -A2 -E "^thread '.*' panicked at|^error(\[E[0-9]+\])?: |No space left on device" "$log" | grep -v -E '^note: run with `RUST_BACKTRACE|^error: (test|doctest) failed' | head -40 || true

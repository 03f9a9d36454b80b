#!/usr/bin/env bash
# Prints how long each test binary of a `cargo test` run took, longest first, from its output.
#
#   e2e/scripts/suite-times.sh target/test-output.log
#
# Reads cargo's "Running <suite> (<binary>)" lines and each binary's "test result: ... finished in
# <seconds>s" line. A binary that crashed before its result line shows as "no result".
set -euo pipefail
log=${1:?usage: suite-times.sh CARGO_TEST_OUTPUT}
awk '
  /^ *Running / { suite = $2; if (suite == "unittests") suite = $2 " " $3; crate = $NF; sub(/.*deps\//, "", crate); sub(/-[0-9a-f]+\)$/, "", crate); current = crate " " suite; pending[current] = 1; order[++n] = current; next }
  /^test result:/ && current != "" { secs = $NF; sub(/s$/, "", secs); time[current] = secs; result[current] = $3; delete pending[current]; current = ""; next }
  END {
    total = 0
    for (i = 1; i <= n; i++) { key = order[i]; if (key in time) total += time[key] }
    printf "\nPer-suite times (cargo test):\n"
    cmd = "sort -t\"\t\" -k1,1nr"
    for (i = 1; i <= n; i++) {
      key = order[i]
      if (key in time) { if (time[key] >= 1) printf "%8.1f s\t%s %s\n", time[key], key, result[key] | cmd }
      else printf "%8s\t%s\n", "no result", key | cmd
    }
    close(cmd)
    printf "%8.1f s\ttotal of test binaries (suites under 1 s not listed)\n", total
  }' "$log"

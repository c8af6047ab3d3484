#!/usr/bin/env bash
# Bounded fuzz run for CI: builds every cargo-fuzz target in fuzz/ once, runs
# each for SECONDS_PER_TARGET seconds, prints one summary line per target
# (executions, exec/s, crash or not) and exits non-zero if any target found a
# crash, leaving the crashing input's path in the output. Without a nightly
# toolchain it prints why it skipped and succeeds.
#
#   fuzz/run-bounded.sh SECONDS_PER_TARGET
set -euo pipefail

if [ $# -ne 1 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 SECONDS_PER_TARGET" >&2
  exit 2
fi
seconds=$1
cd "$(dirname "$0")"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly to enable)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Without AddressSanitizer: Confide and its parsers are safe Rust, where what
# fuzzing finds is a panic (which libFuzzer catches as a crash by itself);
# the sanitizer would make the build markedly slower and every execution too.
# For a run with it: cargo +nightly fuzz run TARGET (the default sanitizer).
sanitizer=${FUZZ_SANITIZER:-none}
started=$SECONDS
cargo +nightly fuzz build --sanitizer "$sanitizer"
echo "fuzz: built every target in $((SECONDS - started)) s"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
crashed=0
summary=()
for target in $(cargo +nightly fuzz list); do
  log="$logs/$target.log"
  # A single input slower than this is a finding too (a denial of service).
  if cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" -- \
    -max_total_time="$seconds" -timeout=25 -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=crash
  fi
  # libFuzzer's final statistics, printed on success and on a crash alike.
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  # Without them (a crash in initialisation), libFuzzer's last status line.
  runs=${runs:-$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)}
  runs=${runs:-0}
  took=${took:-$seconds}
  rate=$((runs / (took > 0 ? took : 1)))
  if [ "$status" = ok ]; then
    line="fuzz: $target: $runs executions in $took s ($rate exec/s), no crash"
  else
    crashed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo "---- $target: the end of libFuzzer's output"
    tail -n 60 "$log"
    line="fuzz: $target: CRASH after $runs executions; input: ${artifact:-none written (see the output above)}"
  fi
  echo "$line"
  summary+=("$line")
done

echo "fuzz: summary ($seconds s per target)"
printf '  %s\n' "${summary[@]}"
exit "$crashed"

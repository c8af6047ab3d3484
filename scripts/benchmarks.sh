#!/usr/bin/env bash
# Runs Confide's standard benchmarks on this machine and writes BENCHMARKS.md:
# the criterion MLS benchmarks (client and DS side, groups of 10, 100 and
# 1,000), the Welcome upload with and without the ratchet tree, and the
# simulator's standard scenarios against an in-process DS on PostgreSQL.
# Each figure is reported with the machine and, where the target is a ratio,
# with its reference measured in the same run.
#
#   scripts/benchmarks.sh [OUTPUT]        (default BENCHMARKS.md)
#
# Needs PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# and python3 (to read criterion's and the simulator's JSON). Takes about
# 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
output=${1:-BENCHMARKS.md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

echo "benchmarks: building"
cargo build --release --bin confide-sim

echo "benchmarks: MLS operations (criterion)"
cargo bench -p confide-client --bench mls -- --warm-up-time 1 --measurement-time 5 \
  | tee "$work/criterion.txt"

echo "benchmarks: Welcome upload with and without the ratchet tree"
cargo test --release -p confide-client --lib \
  adding_one_member_to_a_1000_member_group_uploads_20_times_less_without_the_tree \
  -- --nocapture | tee "$work/upload.txt"

sim() {
  local name=$1
  shift
  echo "benchmarks: simulator scenario $name"
  ./target/release/confide-sim --quiet --store postgres --json "$work/sim-$name.json" "$@" \
    | tee "$work/sim-$name.txt"
}
# Durable application-message ingress and live egress: 200 groups of 10.
sim ingress --users 400 --groups 200x10 --rate 400 --duration 20 --ramp-up 2 \
  --senders-per-group 2 --verifiers-per-group 1 --connections 8
# The same at half that load, for the latency the DS adds.
sim half-load --users 400 --groups 200x10 --rate 200 --duration 20 --ramp-up 2 \
  --senders-per-group 2 --verifiers-per-group 1 --connections 8
# One group of 1,000 members.
sim group-1000 --users 1000 --groups 1x1000 --rate 20 --duration 20 \
  --senders-per-group 2 --verifiers-per-group 2 --connections 8

python3 - "$work" "$output" <<'EOF'
import json, os, platform, subprocess, sys
work, output = sys.argv[1], sys.argv[2]

def criterion(size, name):
    path = f"target/criterion/mls/{name}/{size}/new/estimates.json"
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1e6  # ms

def sim(name):
    with open(os.path.join(work, f"sim-{name}.json")) as f:
        return json.load(f)

cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                     capture_output=True, text=True).stdout.strip()
memory = subprocess.run(["sh", "-c", "free -g | awk '/Mem:/{print $2}'"],
                        capture_output=True, text=True).stdout.strip()
machine = f"{os.cpu_count()} cores ({cpu or platform.machine()}), {memory} GiB"
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()

lines = ["# Benchmarks", "",
         f"Written by `scripts/benchmarks.sh` on {machine}, at commit {commit}. "
         "Medians; every ratio is between figures measured in this same run.", ""]

lines += ["## MLS operations (criterion, median ms)", "",
          "| group size | self-update create | process + merge | DS validate + merge | "
          "DS ÷ process+merge (target ≤ 0.25) | add create | join from Welcome |",
          "|---:|---:|---:|---:|---:|---:|---:|"]
for size in (10, 100, 1000):
    c = {n: criterion(size, n) for n in ("self_update_create", "process_merge",
         "ds_stage_merge", "add_create", "join_from_welcome")}
    ratio = c["ds_stage_merge"] / c["process_merge"]
    lines.append(f"| {size} | {c['self_update_create']:.3f} | {c['process_merge']:.3f} | "
                 f"{c['ds_stage_merge']:.3f} | {ratio:.2f} | {c['add_create']:.3f} | "
                 f"{c['join_from_welcome']:.3f} |")
lines.append("")

upload = open(os.path.join(work, "upload.txt")).read()
for line in upload.splitlines():
    if line.startswith("upload to add one member"):
        served, carried = [int(w) for w in line.replace(",", "").split() if w.isdigit()][-2:]
        lines += ["## Adding one member to a 1,000-member group: the sender's upload", "",
                  f"{served} B with the ratchet tree served by the DS, {carried} B with the tree "
                  f"in the Welcome: {carried / served:.0f}× smaller (target ≥ 20×).", ""]

lines += ["## Simulator (in-process DS on PostgreSQL, synchronous commit on)", "",
          "| scenario | offered msg/s | ingress msg/s | egress deliveries/s | e2e p50 ms | "
          "p99 ms | p99.9 ms | max ms | send p50 ms | lost | forks | verdict |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
for name in ("ingress", "half-load", "group-1000"):
    r = sim(name)
    e, s = r["end_to_end_latency"], r["send_latency"]
    clean = all(r[k] == 0 for k in ("lost_acknowledged", "forks", "desyncs", "duplicates",
                                    "out_of_order", "gaps", "undecryptable",
                                    "plaintext_mismatches"))
    lines.append(f"| {name} | {r['scenario']['message_rate']:.0f} | {r['ingress_per_sec']:.0f} | "
                 f"{r['egress_per_sec']:.0f} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | "
                 f"{e['p999_ms']:.2f} | {e['max_ms']:.2f} | {s['p50_ms']:.2f} | "
                 f"{r['lost_acknowledged']} | {r['forks']} | {'clean' if clean else 'PROBLEMS'} |")
lines += ["",
          "End-to-end latency runs from when the open-loop arrival process made a message due to "
          "when a member received it, client crypto included (full members encrypt, verifiers "
          "decrypt; counters do not).", "",
          "## Not measured yet", "",
          "The tonic echo reference for the ingress ratio, egress to 200,000 deliveries/s, "
          "50,000 live subscriptions within 2 GiB, a 10,000-member group, the accept-commit "
          "transaction alone, and bytes stored per message: the simulator and benches for these "
          "are still to be written (issue #4).", ""]
open(output, "w").write("\n".join(lines))
print(f"benchmarks: wrote {output}")
EOF

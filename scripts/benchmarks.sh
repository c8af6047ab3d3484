#!/usr/bin/env bash
# Runs Confide's standard benchmarks on this machine and writes BENCHMARKS.md
# (and the charts in benchmarks/): the criterion MLS benchmarks (client and DS
# side, groups of 10, 100 and 1,000, the DS's whole accept-commit path), the
# Welcome upload with and without the ratchet tree, durable ingress against a
# trivial tonic echo server and bytes stored per message (confide-ingress),
# 50,000 live subscriptions (confide-subscriptions), and the simulator's
# standard scenarios (a load sweep, half the maximum load, egress to a
# 1,000-member group, churn and faults, a 10,000-member group).
# Each figure is reported with the machine and, where the target is a ratio,
# with its reference measured in the same run.
#
#   scripts/benchmarks.sh [OUTPUT]        (default BENCHMARKS.md)
#
# Needs PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# and python3. Takes about 30 minutes on 2 cores; run it on an otherwise idle
# machine, since every figure is a rate or a latency.
set -euo pipefail
cd "$(dirname "$0")/.."
output=${1:-BENCHMARKS.md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
target=${CARGO_TARGET_DIR:-target}
mkdir -p benchmarks

echo "benchmarks: building"
cargo build --release --bin confide-sim --bin confide-ds --bin confide-ingress \
  --bin confide-subscriptions

echo "benchmarks: MLS operations and the DS's accept-commit path (criterion)"
cargo bench -p confide-tools --bench mls -- --warm-up-time 1 --measurement-time 5 \
  | tee "$work/criterion.txt"

echo "benchmarks: Welcome upload with and without the ratchet tree"
cargo test --release -p confide-client --lib \
  adding_one_member_to_a_1000_member_group_uploads_20_times_less_without_the_tree \
  -- --nocapture | tee "$work/upload.txt"

echo "benchmarks: durable ingress against a tonic echo server, bytes stored per message"
"$target/release/confide-ingress" --quiet --json "$work/ingress.json" | tee "$work/ingress.txt"

echo "benchmarks: 50,000 live subscriptions on one DS"
"$target/release/confide-subscriptions" --ds-bin "$target/release/confide-ds" \
  --clients 50000 --json "$work/subscriptions.json" | tee "$work/subscriptions.txt"

sim() {
  local name=$1
  shift
  echo "benchmarks: simulator scenario $name"
  # A scenario that finds problems exits 1; the report says which, so go on.
  "$target/release/confide-sim" --quiet --json "$work/sim-$name.json" "$@" \
    | tee "$work/sim-$name.txt" || true
}
# Load sweep on PostgreSQL, 200 groups of 10: latency against offered load.
sim sweep --store postgres --users 400 --groups 200x10 --sweep 100,200,400,800 \
  --duration 15 --ramp-up 2 --senders-per-group 2 --verifiers-per-group 1 --connections 8 \
  --plot-sweep benchmarks/sweep.svg
# Half the highest clean ingress of the sweep: the latency the DS adds.
half=$(python3 -c "
import json
runs = json.load(open('$work/sim-sweep.json'))
clean = [r['ingress_per_sec'] for r in runs if r['lost_acknowledged'] == 0]
print(max(10, round(max(clean or [r['ingress_per_sec'] for r in runs]) / 2)))")
sim half-load --store postgres --users 400 --groups 200x10 --rate "$half" --duration 20 \
  --ramp-up 2 --senders-per-group 2 --verifiers-per-group 1 --connections 8 \
  --plot-latency benchmarks/latency.svg
# Egress: one group of 1,000 (four senders, one verifier, the rest count).
sim egress --store memory --users 1000 --groups 1x1000 --rate 200 --duration 15 \
  --senders-per-group 4 --verifiers-per-group 1 --connections 8
# Churn and every fault, on PostgreSQL.
sim churn --store postgres --users 200 --groups 40x5 --rate 40 --duration 30 \
  --senders-per-group 1 --verifiers-per-group 1 --connections 4 \
  --self-updates-per-minute 120 --adds-per-minute 30 --removes-per-minute 30 \
  --commit-storms-per-minute 6 --dropped-responses 0.05 --client-restarts-per-minute 12 \
  --ds-restarts 2
# One group of 10,000 members: created, joined, committed to and messaged.
sim group-10000 --store postgres --users 10000 --groups 1x10000 --rate 5 --duration 10 \
  --senders-per-group 2 --verifiers-per-group 1 --connections 16 --self-updates-per-minute 30

python3 - "$work" "$output" "$target" <<'EOF'
import json, os, platform, subprocess, sys
work, output, target = sys.argv[1], sys.argv[2], sys.argv[3]

def criterion(name, size):
    path = f"{target}/criterion/mls/{name}/{size}/new/estimates.json"
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1e6  # ms

def load(name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)

def clean(r):
    return r["lost_acknowledged"] == 0 and all(
        r[k] == 0 for k in ("misdelivered", "forks", "desyncs", "duplicates", "out_of_order",
                            "gaps", "undecryptable", "plaintext_mismatches"))

def met(ok):
    return "met" if ok else "**not met**"

cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                     capture_output=True, text=True).stdout.strip()
memory = subprocess.run(["sh", "-c", "free -g | awk '/Mem:/{print $2}'"],
                        capture_output=True, text=True).stdout.strip()
postgres = subprocess.run(["sh", "-c", "psql \"$DATABASE_URL\" -Atc 'SHOW server_version' 2>/dev/null"],
                          capture_output=True, text=True).stdout.strip()
machine = f"{os.cpu_count()} cores ({cpu or platform.machine()}), {memory} GiB, PostgreSQL {postgres}"
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()

lines = ["# Benchmarks", "",
         f"Written by `scripts/benchmarks.sh` on {machine}, at commit {commit}. "
         "Criterion figures are medians; every ratio is between figures measured in this same "
         "run. The simulator, the DS and PostgreSQL share the machine's cores.", ""]

targets = []

lines += ["## MLS operations (criterion, median ms)", "",
          "| group size | self-update create | process + merge | DS validate + merge | "
          "DS accept-commit, memory | DS accept-commit, PostgreSQL | add create | join from Welcome |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|"]
for size in (10, 100, 1000):
    c = {n: criterion(n, size) for n in ("self_update_create", "process_merge", "ds_stage_merge",
         "ds_accept_commit_memory", "ds_accept_commit_postgres", "add_create", "join_from_welcome")}
    lines.append(f"| {size} | {c['self_update_create']:.3f} | {c['process_merge']:.3f} | "
                 f"{c['ds_stage_merge']:.3f} | {c['ds_accept_commit_memory']:.3f} | "
                 f"{c['ds_accept_commit_postgres']:.3f} | {c['add_create']:.3f} | "
                 f"{c['join_from_welcome']:.3f} |")
    if size == 1000:
        ratio = c["ds_stage_merge"] / c["process_merge"]
        targets.append(("DS commit handling, 1,000 members ÷ one member's process + merge",
                        "≤ 0.25", f"{ratio:.2f} ({c['ds_stage_merge']:.1f} ms ÷ "
                        f"{c['process_merge']:.1f} ms; the whole accept-commit transaction "
                        f"{c['ds_accept_commit_postgres']:.1f} ms on PostgreSQL)", ratio <= 0.25))
lines.append("")

upload = open(os.path.join(work, "upload.txt")).read()
for line in upload.splitlines():
    if line.startswith("upload to add one member"):
        served, carried = [int(w) for w in line.replace(",", "").split() if w.isdigit()][-2:]
        targets.append(("Upload to add one member to a 1,000-member group, tree in the Welcome "
                        "÷ tree served by the DS", "≥ 20", f"{carried / served:.0f}× "
                        f"({carried:,} B ÷ {served:,} B)", carried / served >= 20))

ingress = load("ingress.json")
ratio = ingress["ingress_to_echo_ratio"]
targets.append(("Durable ingress (PostgreSQL, synchronous commit, 246-byte messages) ÷ tonic "
                "unary echo", "≥ 0.5", f"{ratio:.3f} ({ingress['ingress']['calls_per_sec']:.0f} ÷ "
                f"{ingress['echo']['calls_per_sec']:.0f} calls/s; PostgreSQL alone "
                f"{ingress['postgres_insert']['calls_per_sec']:.0f} single-row commits/s)",
                ratio >= 0.5))
for s in ingress["storage"]:
    targets.append((f"Bytes stored per message ÷ MLS wire size, group of {s['group_size']:,}",
                    "≤ 1.1", f"{s['stored_to_wire_ratio']:.2f} ({s['stored_bytes_per_message']:.0f} B "
                    f"for {s['wire_bytes_per_message']:.0f} B)", s["stored_to_wire_ratio"] <= 1.1))

subs = load("subscriptions.json")
gib = subs["rss_peak_bytes"] / 2**30
targets.append(("50,000 live subscriptions on one DS, peak resident memory", "≤ 2 GiB",
                f"{gib:.2f} GiB ({subs['bytes_per_subscription'] / 1000:.1f} kB per subscription; "
                f"{subs['streams_open']:,} streams open, sample delivered: {subs['live']})",
                subs["within_limit"] and subs["live"]))

sweep = load("sim-sweep.json")
half = load("sim-half-load.json")
egress = load("sim-egress.json")
churn = load("sim-churn.json")
big = load("sim-group-10000.json")
d = half["ds_latency"]
targets.append(("Latency the DS adds (handed to send → received by a counting member) at half "
                "the maximum load, p50 / p99", "≤ 1 ms / ≤ 5 ms",
                f"{d['p50_ms']:.2f} ms / {d['p99_ms']:.2f} ms at {half['scenario']['message_rate']:.0f} msg/s",
                d["p50_ms"] <= 1 and d["p99_ms"] <= 5))
targets.append(("Egress to live subscribers, no drops", "≥ 200,000 deliveries/s",
                f"{egress['egress_per_sec']:,.0f} deliveries/s, "
                f"{'clean' if clean(egress) else 'PROBLEMS'}",
                egress["egress_per_sec"] >= 200000 and clean(egress)))
targets.append(("A 10,000-member group created, joined, committed to and messaged", "done",
                f"{big['messages_acknowledged']} messages, {big['deliveries']:,} deliveries, "
                f"{big['churn']['commits']} self-updates; setup {big['setup']['register_secs']:.0f} s "
                f"+ {big['setup']['groups_secs']:.0f} s; {'clean' if clean(big) else 'PROBLEMS'}",
                clean(big) and big["messages_acknowledged"] > 0 and big["churn"]["commits"] > 0))

lines += ["## Targets", "", "| target | goal | measured | |", "|---|---|---|---|"]
lines += [f"| {name} | {goal} | {value} | {met(ok)} |" for name, goal, value, ok in targets]
lines.append("")

lines += ["## Simulator scenarios", "",
          "End-to-end latency runs from when the open-loop arrival process made a message due to "
          "when a member received it, client crypto included. DS latency runs from when the "
          "message was handed to the client library to when a counting member (no decryption) "
          "received it.", "",
          "| scenario | store | offered msg/s | ingress msg/s | egress deliveries/s | e2e p50 ms | "
          "p99 ms | DS p50 ms | DS p99 ms | commits (conflicts) | lost | verdict |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
runs = [(f"sweep {r['scenario']['message_rate']:.0f}", r) for r in sweep]
runs += [("half load", half), ("egress", egress), ("churn + faults", churn), ("group of 10,000", big)]
for name, r in runs:
    e, d = r["end_to_end_latency"], r["ds_latency"]
    store = "memory" if "in-memory" in r["target"] else "PostgreSQL"
    lines.append(f"| {name} | {store} | {r['scenario']['message_rate']:.0f} | {r['ingress_per_sec']:.0f} | "
                 f"{r['egress_per_sec']:,.0f} | {e['p50_ms']:.1f} | {e['p99_ms']:.1f} | "
                 f"{d['p50_ms']:.1f} | {d['p99_ms']:.1f} | {r['churn']['commits']} "
                 f"({r['churn']['conflicts']}) | {r['lost_acknowledged']} | "
                 f"{'clean' if clean(r) else 'PROBLEMS'} |")
c = churn["churn"]
lines += ["",
          f"Churn and faults: {c['commits']} commits ({c['clients_added']} clients added, "
          f"{c['clients_removed']} removed, {c['conflicts']} races lost and retried, commit "
          f"latency p50 {c['commit_latency']['p50_ms']:.0f} ms, p99 {c['commit_latency']['p99_ms']:.0f} ms), "
          f"{c['dropped_responses']} answers dropped and resent ({c['retry_mismatches']} mismatched), "
          f"{c['client_restarts']} member restarts, {c['ds_restarts']} DS restarts, "
          f"{c['retries']} calls retried without a verdict.", "",
          "![latency against offered load](benchmarks/sweep.svg)", "",
          "![latency second by second at half load](benchmarks/latency.svg)", ""]
open(output, "w").write("\n".join(lines))
print(f"benchmarks: wrote {output}")
EOF

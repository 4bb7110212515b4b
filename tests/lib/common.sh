# SPDX-License-Identifier: MIT
#
# Shared by the end-to-end tests (tests/watch/run, tests/alerts/run); sourced, not run.
# Needs TMP (a temporary folder), PIDS (an array of processes to stop at exit), and for the
# replicator A and B (the authority's and the replica's SQLite files).

pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }

# A port nobody listens on (bash's /dev/tcp fails to connect), taken below the kernel's
# ephemeral range: a port that is the local end of some client connection cannot be bound.
free_port() {
  local p lo
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
  [ "$lo" -gt 12000 ] || lo=32768
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
  done
  echo "no free port" >&2; exit 2
}

now_ms() { date +%s%3N; }

# The replicator: every 0.1 s copies what the authority had DELAY_MS ago. Heartbeat and canary
# rows carry seconds, user rows carry milliseconds in updated_at.
replicate_loop() {
  local delay_ms=$1
  while :; do
    local cutoff=$(( $(now_ms) - delay_ms ))
    sqlite3 "$B" >/dev/null 2>>"$TMP/replicator.err" <<SQL
.timeout 3000
ATTACH '$A' AS src;
BEGIN;
CREATE TABLE IF NOT EXISTS converge_heartbeat (source TEXT PRIMARY KEY, seq INTEGER NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS converge_canary (token TEXT PRIMARY KEY, source TEXT NOT NULL, ts REAL NOT NULL);
INSERT OR REPLACE INTO main.converge_heartbeat SELECT * FROM src.converge_heartbeat WHERE ts * 1000 <= $cutoff;
INSERT OR REPLACE INTO main.converge_canary SELECT * FROM src.converge_canary WHERE ts * 1000 <= $cutoff;
INSERT OR REPLACE INTO main.accounts SELECT s.* FROM src.accounts s
  WHERE s.updated_at <= $cutoff AND NOT EXISTS
    (SELECT 1 FROM main.accounts m WHERE m.id = s.id AND m.updated_at = s.updated_at);
COMMIT;
SQL
    sleep 0.1
  done
}
start_replicator() { replicate_loop "$1" & REPL=$!; PIDS+=("$REPL"); }
stop_replicator()  { kill "$REPL" 2>/dev/null; wait "$REPL" 2>/dev/null; }
# wait_for SECONDS CMD...: polls CMD every 0.2 s until it succeeds
wait_for() {
  local t=$1; shift
  local end=$(( $(date +%s) + t ))
  while [ "$(date +%s)" -le $end ]; do "$@" && return 0; sleep 0.2; done
  return 1
}

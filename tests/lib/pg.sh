# SPDX-License-Identifier: MIT
#
# A real PostgreSQL server for a test, in a temporary folder, on a free loopback port; sourced,
# not run. Needs TMP and PIDS-style cleanup by the caller (pg_stop). As root, the server runs as
# the 'postgres' user (initdb refuses root). Local socket: trust; TCP: SCRAM passwords.
#   pg_start NAME      -> PG_PORT, PG_DIR, PG_SOCK set; user 'converge' (password 'secret-pw')
#   pg_sql SQL         -> runs SQL as the superuser on database 'converge' (pg_sql_file FILE)
#   pg_start NAME 'EXTRA'  -> the same with extra server options (-c wal_level=logical)
#   pg_use PORT SOCK  -> pg_sql talks to that server
#   pg_stop           -> stops every server started
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PG_STARTED=()
pg_start() { # NAME [EXTRA_SERVER_OPTIONS]
  [ -x "$PGBIN/initdb" ] || { echo "pg: initdb not found; run scripts/bootstrap (package postgresql)"; exit 1; }
  PG_DIR=$TMP/$1; PG_SOCK=$TMP/$1-sock; PG_PORT=$(free_port)
  mkdir -p "$PG_DIR" "$PG_SOCK"
  [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR" "$PG_SOCK" && chmod 755 "$TMP"
  as_pg "$PGBIN/initdb" -D "$PG_DIR" -U postgres -A trust -E UTF8 --no-locale >"$TMP/$1-initdb.log" 2>&1 \
    || { cat "$TMP/$1-initdb.log"; exit 1; }
  cat >"$PG_DIR/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 scram-sha-256
HBA
  as_pg "$PGBIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 30 \
    -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses=127.0.0.1 -c fsync=off ${2:-}" start >/dev/null \
    || { cat "$PG_DIR/server.log"; exit 1; }
  PG_STARTED+=("$PG_DIR")
  pg_sql_db postgres "CREATE ROLE converge LOGIN PASSWORD 'secret-pw'" >/dev/null
  pg_sql_db postgres "CREATE DATABASE converge OWNER converge" >/dev/null
}
pg_sql_db() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d "$1" -At -c "$2"; }
pg_sql() { pg_sql_db converge "$1"; }
pg_sql_file() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d converge -At -f "$1"; }
pg_stop() { # every server this test started
  for d in "${PG_STARTED[@]}"; do as_pg "$PGBIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null 2>&1; done
  PG_STARTED=()
}
# pg_use PORT SOCK: point pg_sql at another of the servers
pg_use() { PG_PORT=$1; PG_SOCK=$2; }

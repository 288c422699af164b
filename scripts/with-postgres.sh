#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster: initdb in a temp dir, a server on a free
# port of 127.0.0.1 (trust auth), ENGINE_MLFLOW_POSTGRES=postgresql://USER@127.0.0.1:PORT exported
# for the MLflow test harness (which creates one database per MLflow server), and everything
# removed afterwards, whatever the command's outcome.
#
#   scripts/with-postgres.sh cargo test --release --test tracking_mlflow
set -euo pipefail

bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "error: no PostgreSQL server found under /usr/lib/postgresql; install it (apt-get install postgresql)" >&2
    exit 1
fi
dir="$(mktemp -d)"
# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
as_owner=()
user="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
    user=postgres
    chown postgres "$dir"
    as_owner=(runuser -u postgres --)
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cleanup() {
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
"${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
"${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null ||
    { cat "$dir/server.log" >&2; exit 1; }
export ENGINE_MLFLOW_POSTGRES="postgresql://$user@127.0.0.1:$port"
echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (throwaway, $dir)"
"$@"

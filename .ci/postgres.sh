#!/usr/bin/env bash
# Start a throw-away PostgreSQL for the registry tests; print its SQLAlchemy URL.
# Installs Debian's server when the machine has none (CI machines start fresh).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
dir=$(mktemp -d /tmp/kms-pg.XXXXXX)
chown postgres:postgres "$dir"
port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
su postgres -c "$bin/initdb -D $dir/data -A trust -U postgres" >/dev/null
su postgres -c "$bin/pg_ctl -D $dir/data -o '-p $port -k $dir -c listen_addresses=127.0.0.1' -l $dir/log -w start" >/dev/null
su postgres -c "$bin/psql -h 127.0.0.1 -p $port -U postgres -c 'CREATE DATABASE kms_test'" >/dev/null
echo "postgresql+psycopg://postgres@127.0.0.1:$port/kms_test"

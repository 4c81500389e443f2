#!/usr/bin/env bash
# Test peer of the PostgreSQL ledger: Debian's PostgreSQL 15 server binaries
# (/usr/lib/postgresql/15/bin: initdb, pg_ctl, postgres, psql). The tests start their own
# throwaway clusters with them (crates/netban-testlab/src/postgres.rs: own data directory, own
# port, never 5432); the system cluster is not used, so the "main" cluster that Debian's
# postinst creates is kept from starting (and not created at all on a fresh install).
# Idempotent and quiet when in place.
set -euo pipefail

pgbin=/usr/lib/postgresql/15/bin

if [ ! -x "$pgbin/initdb" ]; then
  echo "netban setup (postgres): installing postgresql-15"
  # A first install runs `pg_createcluster 15 main` unless this says not to.
  mkdir -p /etc/postgresql-common
  conf=/etc/postgresql-common/createcluster.conf
  if [ ! -e "$conf" ]; then
    echo "create_main_cluster = false" >"$conf"
  elif ! grep -q '^create_main_cluster' "$conf"; then
    echo "create_main_cluster = false" >>"$conf"
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confold postgresql-15 postgresql-client-15 >/dev/null
  [ -x "$pgbin/initdb" ] || { echo "netban setup (postgres): $pgbin/initdb still missing" >&2; exit 1; }
fi

# A cluster created by an earlier install (the image's "main" on port 5432) must not start
# with the machine: the tests never use it.
for start_conf in /etc/postgresql/15/*/start.conf; do
  [ -e "$start_conf" ] || continue
  if [ "$(grep -v '^#' "$start_conf" | tr -d '[:space:]')" != "manual" ]; then
    echo "netban setup (postgres): ${start_conf%/start.conf} set to start manually"
    echo "manual" >"$start_conf"
  fi
done

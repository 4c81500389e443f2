#!/usr/bin/env bash
# A throwaway CrowdSec LAPI configuration (Debian's crowdsec 1.4.6), for the `api` benchmark:
# its own directories and SQLite database, no Central API, no agent, Prometheus off, TLS from
# CERT/KEY, listening on LISTEN. Registers the machine `nab-bench` (password in
# DIR/etc/local_api_credentials.yaml, URL rewritten to https) and the bouncer key BOUNCER_KEY.
# It does not start the LAPI: the caller runs `crowdsec -c DIR/etc/config.yaml -no-cs -no-capi`
# where it wants it (a namespace). See /work/shared/field-notes/crowdsec.md for the facts used.
# Usage: crowdsec_lapi.sh DIR LISTEN CERT KEY BOUNCER_KEY
set -euo pipefail
D=${1:?dir}; L=${2:?listen}; CERT=${3:?cert}; KEY=${4:?key}; BOUNCER_KEY=${5:?bouncer key}
mkdir -p "$D/etc" "$D/data" "$D/log"
cp /etc/crowdsec/profiles.yaml /etc/crowdsec/simulation.yaml "$D/etc/"
cat > "$D/etc/config.yaml" <<EOF
common: {daemonize: false, log_media: file, log_level: info, log_dir: $D/log/, working_dir: .}
config_paths:
  config_dir: $D/etc/
  data_dir: $D/data/
  simulation_path: $D/etc/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: $D/etc/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service: {acquisition_path: $D/etc/acquis.yaml}
cscli: {output: human, color: "no"}
db_config: {type: sqlite, db_path: $D/data/crowdsec.db, use_wal: true, flush: {max_items: 5000, max_age: 7d}}
api:
  client: {credentials_path: $D/etc/local_api_credentials.yaml}
  server:
    listen_uri: "$L"
    profiles_path: $D/etc/profiles.yaml
    console_path: $D/etc/console.yaml
    tls: {cert_file: $CERT, key_file: $KEY}
prometheus: {enabled: false}
EOF
C=(cscli -c "$D/etc/config.yaml" --error)
"${C[@]}" machines add nab-bench --auto --force -f "$D/etc/local_api_credentials.yaml"
sed -i 's|^url: http://|url: https://|' "$D/etc/local_api_credentials.yaml"
"${C[@]}" bouncers add nab-bench-fw -k "$BOUNCER_KEY" >/dev/null

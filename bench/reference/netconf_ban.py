#!/usr/bin/env python3
"""Reference for the NETCONF benchmark: one ban per process with ncclient, the seed's way.

The seed (shared/seeds/001, "Implementing fail2ban with 128T") has fail2ban run a Python script
per ban that opens a NETCONF session to the conductor with ncclient, adds the address to the
blacklist tenant's member with edit-config on the candidate, commits, and closes: one session
and one commit per ban. This script does exactly that for one address, so the benchmark runs it
once per ban as fail2ban would (`python3 netconf_ban.py ... ADDR` per ban).

The `--leaf` option names the leaf-list to add to (`address` in the SSR model); the benchmark
uses the test schema's unbounded `ipv4-prefix` list so 1,000 bans fit.

Usage: netconf_ban.py --port P --user U --key FILE --tenant T --neighborhood N [--leaf L] ADDR
"""
import argparse
import sys

from ncclient import manager
from xml.sax.saxutils import escape

T128 = "http://128technology.com/t128"
AUTHY = "http://128technology.com/t128/config/authority-config"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--neighborhood", required=True)
    ap.add_argument("--leaf", default="address")
    ap.add_argument("address")
    a = ap.parse_args()
    leaf = a.leaf
    config = (
        f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
        f'<config xmlns="{T128}"><authority xmlns="{AUTHY}"><tenant>'
        f"<name>{escape(a.tenant)}</name><member><neighborhood>{escape(a.neighborhood)}</neighborhood>"
        f"<{leaf}>{escape(a.address)}/32</{leaf}></member></tenant></authority></config></config>"
    )
    # The seed trusts the conductor's key the way its examples do (no known_hosts check).
    with manager.connect(
        host=a.host,
        port=a.port,
        username=a.user,
        key_filename=a.key,
        hostkey_verify=False,
        allow_agent=False,
        look_for_keys=False,
        timeout=30,
    ) as m:
        m.edit_config(target="candidate", config=config)
        m.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

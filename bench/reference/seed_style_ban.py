#!/usr/bin/env python3
"""Reference for the benchmarks: one ban per process, the way the seed scripts work.

Like shared/seeds/002 (AWS NACL) and 003 (fail2ban-exafs), fail2ban starts a Python process per
ban, which parses its arguments, sets up logging, records the ban in a local SQLite file and
then pushes it to the device. Here the device is the same nftables set netban's benchmark uses,
so the difference measured is the per-process design, not the device.
"""
import argparse
import logging
import os
import sqlite3
import subprocess
import sys


def main():
    parser = argparse.ArgumentParser(description="ban one address (seed-style reference)")
    parser.add_argument("--db", required=True)
    parser.add_argument("--table", default="seedref")
    parser.add_argument("--set", default="banned4")
    parser.add_argument("ip")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    log = logging.getLogger(os.path.basename(__file__))
    conn = sqlite3.connect(args.db)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS blocks (id INTEGER PRIMARY KEY AUTOINCREMENT, ip TEXT NOT NULL, blocked BOOLEAN NOT NULL)"
    )
    cur = conn.execute("SELECT count(*) FROM blocks WHERE ip=? AND blocked=1", (args.ip,))
    if cur.fetchone()[0] > 0:
        log.info("IP %s already blocked", args.ip)
        return 0
    conn.execute("INSERT INTO blocks (ip, blocked) VALUES (?, 1)", (args.ip,))
    conn.commit()
    cmd = ["nft", "add", "element", "inet", args.table, args.set, "{ %s }" % args.ip]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        log.error("failed to block %s: %s", args.ip, result.stderr.strip())
        return 1
    log.info("blocked %s", args.ip)
    return 0


if __name__ == "__main__":
    sys.exit(main())

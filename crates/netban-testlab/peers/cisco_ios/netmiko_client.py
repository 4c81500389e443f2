#!/usr/bin/env python3
"""Test helper of the netban project: netmiko 4.8 as an independent IOS client.

Runs a list of steps over ONE netmiko connection to the router (or to netban's IOS test
emulator) and prints one JSON list with the result of each step. Used by the emulator's
harness (crates/netban-testlab/src/peers/ios.rs) to cross-check the emulator with a client that is not
netban's, and to change the router "by hand" the way an operator would.

usage: netmiko_client.py --port P [--host 127.0.0.1] --username U --password P [--secret S]
                         STEPS_JSON
STEPS_JSON: [["show", "show ip access-lists X"], ["config", ["ip access-list extended X", "no 10"]],
             ["config_checked", [...]]]   (config_checked: netmiko's error_pattern on "% ")
Result per step: {"ok": true, "output": "..."} or {"ok": false, "error": "..."}.
"""
import argparse
import json
import sys

from netmiko import ConnectHandler
from netmiko.exceptions import ConfigInvalidException


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--secret", default="")
    parser.add_argument("steps")
    args = parser.parse_args()
    steps = json.loads(args.steps)
    conn = ConnectHandler(
        device_type="cisco_ios",
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        secret=args.secret,
        fast_cli=True,
    )
    results = []
    try:
        if args.secret:
            conn.enable()
        for kind, arg in steps:
            try:
                if kind == "show":
                    out = conn.send_command(arg)
                elif kind == "config":
                    out = conn.send_config_set(arg)
                elif kind == "config_checked":
                    out = conn.send_config_set(arg, error_pattern=r"% ")
                else:
                    raise ValueError("unknown step %r" % kind)
                results.append({"ok": True, "output": out, "prompt": conn.find_prompt()})
            except ConfigInvalidException as e:
                results.append({"ok": False, "error": str(e), "prompt": conn.find_prompt()})
    finally:
        conn.disconnect()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

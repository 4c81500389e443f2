#!/usr/bin/env python3
"""Reference for the Cisco IOS benchmark: one ban per process and per SSH connection, the way
the seed script (shared/seeds/000, "ciscoios-acl") works.

fail2ban runs this once per ban. It starts Python, connects to the router with netmiko, enters
enable mode, adds ONE line to the ACL in a configuration session, and disconnects. Like the seed,
the line is a `permit` entry of an ACL that a zone-based policy's class-map matches to drop.
The seed hard-codes the router's address and credentials in the script; here they are
arguments so the benchmark can point it at the test router.

usage: ios_netmiko_ban.py --port P [--host 127.0.0.1] --username U --password P --secret S
                          [--acl FAIL2BAN] ban|unban IP
"""
import argparse
import sys

from netmiko import ConnectHandler


def main():
    parser = argparse.ArgumentParser(description="ban one address on a Cisco IOS ACL (seed-style)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=22)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--secret", default="")
    parser.add_argument("--acl", default="FAIL2BAN")
    parser.add_argument("action", choices=["ban", "unban"])
    parser.add_argument("ip")
    args = parser.parse_args()
    router = {
        "device_type": "cisco_ios",
        "host": args.host,
        "port": args.port,
        "username": args.username,
        "password": args.password,
        "secret": args.secret,
    }
    net_connect = ConnectHandler(**router)
    net_connect.enable()
    line = "permit ip host %s any" % args.ip
    if args.action == "unban":
        line = "no " + line
    net_connect.send_config_set(["ip access-list extended %s" % args.acl, line])
    net_connect.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reference for the AWS benchmarks: one ban per process with boto3, the way the seed works.

The seed (shared/seeds/002, "Integrating Fail2Ban with AWS Network ACLs") is run by fail2ban as
one Python process per ban: it imports boto3, checks the NACL exists (DescribeNetworkAcls),
counts its blocks in a SQLite file, and while the NACL has room records the ban, derives a rule
number from the row id (`seq % RULE_RANGE + RULE_BASE`), creates the deny entry and reads the
NACL back to check it; when the NACL is full it runs the host firewall command instead. This
script keeps that flow (IPv4 only, like the seed), with the endpoint and the fallback command
as arguments so the benchmark can point it at moto and at nftables in a test namespace.

The `waf` mode is the same design for a WAFv2 IP set (the seed has no WAF part): one process
per ban that reads the set (GetIPSet) and writes the whole list back with the new address
(UpdateIPSet with the lock token).

Usage: aws_ban.py --endpoint URL nacl --acl ID --db FILE [--max-blocks N] [--fallback CMD] IP
       aws_ban.py --endpoint URL waf --name NAME --id ID IP
"""
import argparse
import os
import shlex
import sqlite3
import subprocess
import sys

import boto3

RULE_BASE = 1
RULE_RANGE = 99


def client(kind, endpoint):
    return boto3.client(kind, endpoint_url=endpoint, region_name="us-east-1")


def check_block(ec2, ip, acl):
    entries = ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"][0]["Entries"]
    return any(ip in e.get("CidrBlock", "") for e in entries)


def nacl(args):
    ec2 = client("ec2", args.endpoint)
    ec2.describe_network_acls(NetworkAclIds=[args.acl])  # the seed's is_acl()
    conn = sqlite3.connect(args.db)
    cur = conn.cursor()
    cur.execute("""CREATE TABLE if not exists blocks (id integer PRIMARY KEY AUTOINCREMENT,
                   ip text NOT NULL, acl text NOT NULL, blocked boolean NOT NULL,
                   host boolean NOT NULL)""")
    cur.execute("select count (*) from blocks where ip=? and blocked=1", (args.ip,))
    if cur.fetchone()[0] > 0:
        return 0
    cur.execute("select count (*) from blocks where blocked=1 and host=0")
    if cur.fetchone()[0] < args.max_blocks:
        cur.execute("insert into blocks (ip, acl, blocked, host) values (?,?,?,?)",
                    (args.ip, args.acl, 1, 0))
        cur.execute("select seq from sqlite_sequence where name='blocks'")
        rule = cur.fetchone()[0] % RULE_RANGE + RULE_BASE
        ec2.create_network_acl_entry(NetworkAclId=args.acl, RuleNumber=rule, Protocol="-1",
                                     RuleAction="deny", Egress=False,
                                     CidrBlock=args.ip + "/32")
        if not check_block(ec2, args.ip, args.acl):
            cur.execute("UPDATE blocks SET blocked = 0 where ip=? and blocked=1", (args.ip,))
    else:
        if args.fallback:
            subprocess.run(shlex.split(args.fallback.replace("{ip}", args.ip)), check=True)
        cur.execute("insert into blocks (ip, acl, blocked, host) values (?,?,?,?)",
                    (args.ip, "", 1, 1))
    conn.commit()
    return 0


def waf(args):
    api = client("wafv2", args.endpoint)
    got = api.get_ip_set(Name=args.name, Scope="REGIONAL", Id=args.id)
    addresses = got["IPSet"]["Addresses"]
    cidr = args.ip + "/32"
    if cidr not in addresses:
        api.update_ip_set(Name=args.name, Scope="REGIONAL", Id=args.id,
                          Addresses=addresses + [cidr], LockToken=got["LockToken"])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    sub = parser.add_subparsers(dest="mode", required=True)
    n = sub.add_parser("nacl")
    n.add_argument("--acl", required=True)
    n.add_argument("--db", required=True)
    n.add_argument("--max-blocks", type=int, default=20)
    n.add_argument("--fallback", default="")
    n.add_argument("ip")
    w = sub.add_parser("waf")
    w.add_argument("--name", required=True)
    w.add_argument("--id", required=True)
    w.add_argument("ip")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    return nacl(args) if args.mode == "nacl" else waf(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reference for the ExaFS benchmark: one ban per process, the way fail2ban-exafs works.

Like the seed (shared/seeds/003, CESNET/fail2ban-exafs `exafs_action.py ban <ip> <bantime>`),
fail2ban starts one Python process per ban. It imports `requests`, reuses a JWT cached in a
JSON file while it is valid (authenticating with the API key otherwise, and again on 401),
POSTs the RTBH rule with retries on connection errors and 5xx, and records ip -> rule id in a
JSON file under a file lock so `unban` can DELETE it. The API calls are the ones netban's
driver makes, against the same ExaFS, so the difference measured is the per-process design.

Usage: exafs_ban.py --url URL --key-file FILE --community ID --state-dir DIR ban IP BANTIME
       exafs_ban.py ... unban IP
"""
import argparse
import fcntl
import ipaddress
import json
import logging
import os
import sys
import time

import requests

log = logging.getLogger("exafs_ban")


class ExaFS:
    def __init__(self, url, key, state_dir):
        self.api = url.rstrip("/") + "/api/v3"
        self.key = key
        self.token_file = os.path.join(state_dir, "token.json")
        self.session = requests.Session()
        self.token = None

    def _load_token(self):
        try:
            with open(self.token_file) as f:
                cached = json.load(f)
            if cached.get("expires", 0) > time.time() + 60:
                return cached["token"]
        except (OSError, ValueError, KeyError):
            pass
        return None

    def authenticate(self):
        r = self._request("GET", "/auth", headers={"x-api-key": self.key}, auth=False)
        r.raise_for_status()
        self.token = r.json()["token"]
        # Like the seed: cache for 25 minutes (ExaFS tokens live 30).
        tmp = self.token_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"token": self.token, "expires": time.time() + 25 * 60}, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.token_file)

    def _request(self, method, path, auth=True, retries=3, **kwargs):
        delay = 0.5
        for attempt in range(retries):
            headers = dict(kwargs.pop("headers", {}) or {})
            if auth:
                if self.token is None:
                    self.token = self._load_token()
                if self.token is None:
                    self.authenticate()
                headers["x-access-token"] = self.token
            try:
                r = self.session.request(method, self.api + path, headers=headers, timeout=30, **kwargs)
            except requests.ConnectionError as e:
                log.warning("connection error (%s), retry %d", e, attempt + 1)
                time.sleep(delay)
                delay *= 2
                continue
            if auth and r.status_code == 401:
                self.authenticate()
                continue
            if r.status_code >= 500 and attempt + 1 < retries:
                time.sleep(delay)
                delay *= 2
                continue
            return r
        raise SystemExit("ExaFS unreachable after %d attempts" % retries)

    def ban(self, ip, bantime, community):
        net = ipaddress.ip_network(ip, strict=True)
        body = {"community": community, "expires": int(time.time()) + int(bantime), "comment": "fail2ban"}
        if net.version == 4:
            body.update(ipv4=str(net.network_address), ipv4_mask=net.prefixlen)
        else:
            body.update(ipv6=str(net.network_address), ipv6_mask=net.prefixlen)
        r = self._request("POST", "/rules/rtbh", json=body)
        if r.status_code != 201:
            raise SystemExit("ban %s failed: %s %s" % (ip, r.status_code, r.text[:200]))
        return r.json()["rule"]["id"]

    def unban(self, rule_id):
        r = self._request("DELETE", "/rules/rtbh/%d" % rule_id)
        if r.status_code not in (201, 404):
            raise SystemExit("unban failed: %s %s" % (r.status_code, r.text[:200]))


class RuleMap:
    """ip -> rule id in a JSON file, under an exclusive lock."""

    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, "rules.json")
        self.lock = open(self.path + ".lock", "w")

    def __enter__(self):
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            with open(self.path) as f:
                self.rules = json.load(f)
        except (OSError, ValueError):
            self.rules = {}
        return self

    def __exit__(self, *exc):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.rules, f)
        os.replace(tmp, self.path)
        fcntl.flock(self.lock, fcntl.LOCK_UN)


def main():
    parser = argparse.ArgumentParser(description="ban one address in ExaFS (seed-style reference)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--community", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("action", choices=["ban", "unban"])
    parser.add_argument("ip")
    parser.add_argument("bantime", nargs="?", default="3600")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    with open(args.key_file) as f:
        key = f.read().strip()
    exafs = ExaFS(args.url, key, args.state_dir)
    with RuleMap(args.state_dir) as rules:
        if args.action == "ban":
            rules.rules[args.ip] = exafs.ban(args.ip, args.bantime, args.community)
        else:
            rule_id = rules.rules.pop(args.ip, None)
            if rule_id is not None:
                exafs.unban(rule_id)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""fail2ban + netban, measured from fail2ban's side, beside the references, in one run.

Sections (all by default; `--sections` picks some):

  client   `netban ban ADDR` (one durable ban, daemon running) against the process floor:
           spawning /bin/true, one fsync of the ledger's file system, and `dd conv=fsync`
           (one process that writes 4 KiB and fsyncs it). hyperfine, side by side.
  banip    `fail2ban-client set sshd banip` of COUNT addresses, until every one is enforced
           (in the nftables set of the bench's network namespace).
  restore  fail2ban restarted with those COUNT bans in its database, until it is ready, has
           restored every ban, and every one is enforced.

banip and restore run with each action: `netban.py` (the in-process Python action),
`netban` (the shell action, a `netban` process per ban), fail2ban's own `nftables`
(`type=allports`, an `nft` process per ban) and an action whose commands are all empty
(fail2ban's own floor). Everything runs on this machine with the real fail2ban; nftables
changes happen inside a network namespace the bench creates and deletes.

Usage (root): bench/fail2ban/bench.py --bin-dir target/release [--count 2000]
                                       [--fast-count 10000]
                                       [--sections client,banip,restore]
                                       [--actions netban.py,netban,nftables,empty]
Needs: fail2ban, nftables, hyperfine (scripts/setup.sh installs them) and a release build of
netban and netban-daemon.
"""

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, "/usr/lib/python3/dist-packages")
from fail2ban.client.csocket import CSocket  # noqa: E402  (the real fail2ban's own client)

ACTIONS = ["netban.py", "netban", "nftables", "empty"]
EMPTY_ACTION = """[Definition]
actionstart =
actionstop =
actioncheck =
actionflush =
actionban =
actionunban =
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


def wait_until(what, timeout, interval, condition):
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class Netns:
    """A network namespace of our own, deleted at the end."""

    def __init__(self):
        self.name = "nbf2b%d" % os.getpid()
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run(["ip", "link", "set", "lo", "up"])

    def run(self, argv, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name] + argv, check=True, **kw)

    def set_size(self, family_table, set_name):
        out = subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", "-j", "list", "set"]
            + family_table + [set_name],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if out.returncode != 0:
            return 0
        for item in json.loads(out.stdout)["nftables"]:
            if "set" in item:
                return len(item["set"].get("elem", []))
        return 0

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


class Daemon:
    """netban-daemon with a fresh ledger, enforcing in the namespace."""

    def __init__(self, bin_dir, directory, netns):
        os.makedirs(directory, exist_ok=True)
        self.config = os.path.join(directory, "netban.toml")
        self.socket = os.path.join(directory, "netban.sock")
        self.ledger = os.path.join(directory, "ledger.db")
        self.client = os.path.join(bin_dir, "netban")
        with open(self.config, "w") as f:
            f.write('[daemon]\nsocket = "%s"\nledger = "%s"\nhost = "bench"\n\n'
                    '[policy.escalation]\nenabled = false\n\n'
                    '[[targets]]\nname = "edge"\ntype = "nftables"\nnetns = "%s"\n'
                    % (self.socket, self.ledger, netns.name))
        self.log = open(os.path.join(directory, "daemon.log"), "ab")
        self.process = subprocess.Popen(
            [os.path.join(bin_dir, "netban-daemon"), "--config", self.config],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            env=dict(os.environ, NETBAN_LOG="warn"))
        wait_until("netban-daemon", 20, 0.01, self._answers)

    def _answers(self):
        import socket
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self.log.close()


class Fail2ban:
    """fail2ban-server in the namespace with a copy of /etc/fail2ban and one sshd jail."""

    def __init__(self, directory, netns, action, daemon):
        self.dir = directory
        self.netns = netns
        self.conf = os.path.join(directory, "conf")
        self.socket = os.path.join(directory, "f2b.sock")
        self.db = os.path.join(directory, "f2b.sqlite3")
        self.process = None
        if os.path.exists(self.conf):
            return
        shutil.copytree("/etc/fail2ban", self.conf)
        shutil.rmtree(os.path.join(self.conf, "jail.d"))
        os.makedirs(os.path.join(self.conf, "jail.d"))
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        action_d = os.path.join(self.conf, "action.d")
        shutil.copy(os.path.join(repo, "fail2ban/action.d/netban.py"), action_d)
        with open(os.path.join(repo, "fail2ban/action.d/netban.conf")) as f:
            shell = f.read()
        if daemon is not None:
            shell = shell.replace("netban = /usr/local/bin/netban",
                                  "netban = %s" % daemon.client)
            shell = shell.replace("netban_opts =\n", "netban_opts = --config %s\n" % daemon.config)
        with open(os.path.join(action_d, "netban.conf"), "w") as f:
            f.write(shell)
        with open(os.path.join(action_d, "bench-empty.conf"), "w") as f:
            f.write(EMPTY_ACTION)
        banaction = {
            "netban.py": 'netban.py[config="%s", netban="%s", spool_dir="%s"]' % (
                daemon and daemon.config, daemon and daemon.client,
                os.path.join(directory, "spool")),
            "netban": "netban",
            "nftables": "nftables[type=allports]",
            "empty": "bench-empty",
        }[action]
        auth_log = os.path.join(directory, "auth.log")
        open(auth_log, "w").close()
        with open(os.path.join(self.conf, "fail2ban.local"), "w") as f:
            f.write("[Definition]\nloglevel = NOTICE\nlogtarget = %s\ndbfile = %s\n"
                    % (os.path.join(directory, "fail2ban.log"), self.db))
        with open(os.path.join(self.conf, "jail.local"), "w") as f:
            f.write("[sshd]\nenabled = true\nbackend = polling\nlogpath = %s\nmaxretry = 3\n"
                    "findtime = 600\nbantime = 1d\naction = %s\n" % (auth_log, banaction))

    def start(self):
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns.name, "fail2ban-server", "-f", "-x",
             "-c", self.conf, "-s", self.socket, "-p", os.path.join(self.dir, "f2b.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "fail2ban.stderr"), "ab"))
        wait_until("fail2ban-server", 60, 0.01, lambda: self.request(["ping"]) is not None)

    def request(self, message):
        try:
            s = CSocket(self.socket, timeout=30)
        except OSError:
            return None
        try:
            return s.send(message)
        except OSError:
            return None
        finally:
            s.close()

    def banned(self):
        """The jail's "Currently banned" count."""
        answer = self.request(["status", "sshd"])
        if not answer or answer[0] != 0:
            return -1
        for key, value in answer[1]:
            if key == "Actions":
                return dict(value)["Currently banned"]
        return -1

    def in_database(self):
        with sqlite3.connect("file:%s?mode=ro" % self.db, uri=True) as db:
            return db.execute("SELECT count(*) FROM bans WHERE jail = 'sshd'").fetchone()[0]

    def client(self, args):
        return subprocess.run(["fail2ban-client", "-c", self.conf, "-s", self.socket] + args,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)

    def stop(self):
        self.request(["stop"])
        self.process.wait(600)


def enforced(action, netns, fail2ban):
    """How many bans are enforced now (for the empty action: what fail2ban counts)."""
    if action in ("netban.py", "netban"):
        return netns.set_size(["inet", "netban"], "ban4")
    if action == "nftables":
        return netns.set_size(["inet", "f2b-table"], "addr-set-sshd")
    return fail2ban.banned()


def addresses(count):
    # 198.19.0.0/16 (benchmarking range): never routed here, only set entries.
    return ["198.19.%d.%d" % (i // 250, 1 + i % 250) for i in range(count)]


def bench_action(action, count, bin_dir, work, netns, sections):
    directory = os.path.join(work, action.replace(".", "-"))
    os.makedirs(directory)
    daemon = Daemon(bin_dir, os.path.join(directory, "netban"), netns) \
        if action.startswith("netban") else None
    fail2ban = Fail2ban(directory, netns, action, daemon)
    results = {}
    try:
        fail2ban.start()
        ips = addresses(count)
        poll = 0.05 if count <= 2000 else 0.1
        start = time.monotonic()
        fail2ban.client(["set", "sshd", "banip"] + ips)
        returned = time.monotonic() - start
        wait_until("%s: %d enforced" % (action, count), 3600, poll,
                   lambda: enforced(action, netns, fail2ban) >= count)
        results["banip"] = time.monotonic() - start
        results["banip_returned"] = returned
        log("  %-10s banip %d: %.2f s (fail2ban-client returned after %.2f s)"
            % (action, count, results["banip"], returned))
        if "restore" in sections:
            wait_until("fail2ban's database", 120, 0.1, lambda: fail2ban.in_database() >= count)
            fail2ban.stop()
            start = time.monotonic()
            fail2ban.start()
            ready = time.monotonic() - start
            wait_until("%s: %d restored" % (action, count), 3600, poll,
                       lambda: fail2ban.banned() >= count
                       and enforced(action, netns, fail2ban) >= count)
            results["restore"] = time.monotonic() - start
            log("  %-10s restore %d: %.2f s (fail2ban answered after %.2f s)"
                % (action, count, results["restore"], ready))
        fail2ban.stop()
    finally:
        if fail2ban.process and fail2ban.process.poll() is None:
            fail2ban.process.kill()
        if daemon:
            daemon.stop()
        # fail2ban's nftables action leaves its table when killed; netban's stays by design.
        subprocess.run(["ip", "netns", "exec", netns.name, "nft", "flush", "ruleset"],
                       check=False)
    return results


def fsync_seconds(directory, rounds=300):
    """Mean time of write(4 KiB) + fsync on the file system of `directory`."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"x" * 4096
    try:
        start = time.perf_counter()
        for _ in range(rounds):
            os.pwrite(fd, block, 0)
            os.fsync(fd)
        return (time.perf_counter() - start) / rounds
    finally:
        os.close(fd)
        os.unlink(path)


def socket_round_trip(daemon, rounds=300):
    """Mean time of one ban request over a persistent connection (no process): the daemon's
    own cost per sequential durable ban."""
    import socket
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(daemon.socket)
    reader = conn.makefile("rb")
    try:
        start = time.perf_counter()
        for i in range(rounds):
            request = {"op": "ban", "prefixes": ["198.19.251.%d" % (1 + i % 250)],
                       "source": "bench-socket", "duration": {"seconds": 600}, "reason": None,
                       "failures": None, "origin_host": None, "restored": False}
            conn.sendall(json.dumps(request).encode() + b"\n")
            answer = json.loads(reader.readline())
            assert answer["status"] == "ok", answer
        return (time.perf_counter() - start) / rounds
    finally:
        reader.close()
        conn.close()


def bench_client(bin_dir, work, netns, runs, compare):
    """hyperfine, side by side: /bin/true, dd conv=fsync, netban --version (start-up and
    argument parsing only), netban ban (durable, daemon up); then, in process, one fsync and
    one ban over the daemon's socket."""
    daemon = Daemon(bin_dir, os.path.join(work, "client"), netns)
    try:
        probe = os.path.join(work, "client", "dd-probe")
        with open(probe, "wb") as f:
            f.write(b"x" * 4096)
        export = os.path.join(work, "client", "hyperfine.json")
        ban = "%s --config %s ban 198.19.250.1 --source bench --bantime 600" % (
            daemon.client, daemon.config)
        subprocess.run(
            ["hyperfine", "-N", "--warmup", "20", "--runs", str(runs), "--style", "none",
             "--export-json", export,
             "-n", "/bin/true", "/bin/true",
             "-n", "dd conv=fsync",
             "dd if=/dev/zero of=%s bs=4096 count=1 conv=notrunc,fsync" % probe,
             "-n", "netban --version", "%s --version" % daemon.client,
             "-n", "netban ban", ban]
            + [arg for other in compare
               for arg in ("-n", "netban ban (%s)" % other,
                           ban.replace(daemon.client, other, 1))],
            check=True, stdout=subprocess.DEVNULL)
        with open(export) as f:
            measured = {r["command"]: r for r in json.load(f)["results"]}
        fsync = fsync_seconds(os.path.dirname(daemon.ledger))
        round_trip = socket_round_trip(daemon)
        # Each `netban ban` above was a durable write: the ledger holds one event per run.
        with sqlite3.connect("file:%s?mode=ro" % daemon.ledger, uri=True) as db:
            events = db.execute(
                "SELECT count(*) FROM events WHERE source = 'bench'").fetchone()[0]
    finally:
        daemon.stop()
    return measured, fsync, round_trip, events


def table(results, actions, count, sections):
    """Prints one markdown table: seconds, and ratios to nftables and to the empty action."""
    print("\n## fail2ban, %d addresses, until enforced (one run)\n" % count)
    columns = [s for s in ("banip", "restore") if s in sections]
    ref = results.get("nftables")
    floor = results.get("empty")
    header = "| action | " + " | ".join(
        "%s s | vs nftables | vs empty" % c for c in columns) + " |"
    print(header)
    print("|---|" + "---|---|---|" * len(columns))
    for action in actions:
        r = results[action]
        cells = []
        for c in columns:
            cells.append("%.2f" % r[c])
            cells.append("%.1f× faster" % (ref[c] / r[c]) if ref else "–")
            cells.append("%.2f×" % (r[c] / floor[c]) if floor else "–")
        print("| %s | %s |" % (action, " | ".join(cells)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", default="target/release")
    parser.add_argument("--count", type=int, default=2000,
                        help="addresses for every action (process-per-ban ones take ~10 ms each)")
    parser.add_argument("--fast-count", type=int, default=10000,
                        help="then again with netban.py and the empty action only (0: skip)")
    parser.add_argument("--sections", default="client,banip,restore")
    parser.add_argument("--actions", default=",".join(ACTIONS))
    parser.add_argument("--runs", type=int, default=300, help="hyperfine runs (client)")
    parser.add_argument("--compare-client",
                        help="other netban binaries to time beside, comma-separated (client)")
    o = parser.parse_args()
    sections = o.sections.split(",")
    actions = o.actions.split(",")
    bin_dir = os.path.abspath(o.bin_dir)
    if os.geteuid() != 0:
        sys.exit("bench/fail2ban: run as root (network namespace, nftables)")
    work = tempfile.mkdtemp(prefix="netban-f2b-bench-")
    netns = Netns()
    try:
        if "client" in sections:
            log("client: hyperfine, %d runs each" % o.runs)
            compare = o.compare_client.split(",") if o.compare_client else []
            measured, fsync, round_trip, events = bench_client(
                bin_dir, work, netns, o.runs, compare)
            true = measured["/bin/true"]
            floor = true["mean"] + fsync
            print("\n## netban ban at the process floor (hyperfine -N, %d runs; one run)\n"
                  % o.runs)
            print("| what | mean | median | / floor |")
            print("|---|---|---|---|")
            names = ["/bin/true", "dd conv=fsync", "netban --version", "netban ban"]
            names += ["netban ban (%s)" % other for other in compare]
            for name in names:
                r = measured[name]
                print("| `%s` | %.3f ± %.3f ms | %.3f ms | %.2f× |" % (
                    name, r["mean"] * 1e3, r["stddev"] * 1e3, r["median"] * 1e3,
                    r["mean"] / floor))
            print("| one fsync (4 KiB pwrite + fsync, in process) | %.3f ms | | |" % (fsync * 1e3))
            print("| one ban over a persistent socket (daemon only, no process) | %.3f ms | | |"
                  % (round_trip * 1e3))
            print("| **floor: /bin/true + one fsync** | %.3f ms | | 1.00× |" % (floor * 1e3))
            print("\nledger events written by the `netban ban` runs: %d (runs + warm-ups)"
                  % events)
        runs = [(o.count, actions)]
        fast = [a for a in actions if a in ("netban.py", "empty")]
        if o.fast_count and fast:
            runs.append((o.fast_count, fast))
        for count, chosen in runs:
            if "banip" not in sections and "restore" not in sections:
                break
            log("fail2ban: %d addresses, actions %s" % (count, ", ".join(chosen)))
            results = {}
            for action in chosen:
                results[action] = bench_action(action, count, bin_dir,
                                               os.path.join(work, str(count)), netns, sections)
            table(results, chosen, count, sections)
    finally:
        netns.delete()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

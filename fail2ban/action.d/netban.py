# fail2ban action, in process: hand every ban to netban without starting a process per ban.
#
# netban records each ban durably per (address, jail) and enforces it on every configured
# target at once (nftables, router ACLs, AWS, ExaFS, NETCONF, BGP). fail2ban loads this file
# into its own process (like its smtp.py) and calls ban() for every ban; the action speaks
# netban's socket protocol (netban-proto: one JSON object per line over the daemon's Unix
# socket) over one persistent connection. Bans are what the shell action netban.conf sends:
# per-jail source, bantime (-1 permanent), failures, fail2ban's restore at start marked
# `restored` (answered by the daemon without a write), prolong, and keep-on-stop.
#
# Install: copy to /etc/fail2ban/action.d/netban.py, then in jail.local:
#     [DEFAULT]
#     banaction = netban.py
#     banaction_allports = netban.py
# Options (all optional), e.g. `banaction = netban.py[config=/etc/netban/other.toml]`:
#     config        netban.toml, as the client's --config (default /etc/netban/netban.toml
#                   if it exists): its [daemon] socket is used, and the client fallback gets it
#     socket        the daemon's socket (default: from the configuration, else
#                   /run/netban/netban.sock)
#     netban        the client used when the daemon is down (default /usr/local/bin/netban)
#     timeout       seconds to wait for the daemon or the client (default 5)
#     spool_dir     where undeliverable requests wait (default /var/lib/netban/fail2ban-spool)
#     keep_on_stop  yes (default): bans outlive fail2ban; no: lift this jail's bans at stop
#
# How a ban travels, and why fail2ban never waits for it:
#   ban() only queues the request and returns (a few microseconds). One sender thread per
#   action sends what is queued as one request per run of equal requests (a 10,000-address
#   `banip` becomes a few requests; the daemon commits each in one transaction).
#   If the daemon is down (no socket, connection refused), the sender runs the netban client,
#   which records the bans in the ledger directly; the daemon enforces them when it starts.
#   If the daemon does not answer within `timeout`, or the client fails too, the requests go
#   to a durable spool file (appended and fsynced) that the sender retries, in order, with
#   backoff; while the spool holds anything, later requests queue behind it. Nothing is
#   dropped silently: every fallback and every refusal is logged.
#   A request whose outcome is unknown (the daemon died or stalled after receiving it) is
#   retried as a restore (`restored`): the daemon then skips it if it already holds the ban,
#   so an uncertain ban is never escalated twice.

import errno
import json
import os
import select
import socket
import subprocess
import threading
import time
from collections import deque

from fail2ban.server.action import ActionBase

DEFAULT_CONFIG = "/etc/netban/netban.toml"
DEFAULT_SOCKET = "/run/netban/netban.sock"
DEFAULT_CLIENT = "/usr/local/bin/netban"
DEFAULT_SPOOL_DIR = "/var/lib/netban/fail2ban-spool"


def _wire(request):
    """The daemon's protocol (version 2) for one queued request: fail2ban's bantime, -1 for
    permanent, becomes a typed duration; the queue and the spool keep fail2ban's form."""
    if request["op"] != "ban":
        return request
    wire = dict(request)
    bantime = wire.pop("bantime")
    wire["duration"] = "permanent" if bantime < 0 else {"seconds": bantime}
    return wire

# At most this many addresses in one request (one ledger transaction in the daemon).
MAX_BATCH = 2000
# Spool retries back off from the first to the second (seconds).
RETRY_MIN = 0.5
RETRY_MAX = 10.0

SOURCE_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


def _yes(value):
    return str(value).strip().lower() in ("yes", "true", "1", "on")


def _socket_from_config(config):
    """The daemon's socket named in netban.toml (relative paths are relative to the file), or
    None when the file does not name one."""
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        raise ValueError("reading %s needs Python 3.11 (tomllib); give the action a socket=... "
                         "option instead" % config)
    with open(config, "rb") as f:
        path = tomllib.load(f).get("daemon", {}).get("socket")
    if path is None:
        return None
    return os.path.join(os.path.dirname(os.path.abspath(config)), path)


class DaemonDown(Exception):
    """The request was not sent: no daemon is listening."""


class Uncertain(Exception):
    """The request was sent but not answered: the daemon may or may not have recorded it."""


class Refused(Exception):
    """The daemon refused the request as malformed (an address it cannot parse): retrying
    cannot help."""


class Undelivered(Exception):
    """Neither the daemon nor the client recorded the request."""


class NetbanAction(ActionBase):
    """Sends fail2ban's bans to netban's daemon over its socket, with fallbacks."""

    # fail2ban calls Action(jail, <action name>, **options); a `name` option (jail.conf uses it
    # to rename an action's instances) therefore arrives in `options`, as in the shell action
    # where <name> is the source.
    def __init__(self, jail, action_name, **options):
        super().__init__(jail, action_name)
        self._conn = None
        self._buffer = b""
        self._queue = deque()
        self._busy = False  # the sender holds requests taken from the queue
        self._changed = threading.Condition()
        self._spool_lock = threading.Lock()
        self._sender = None
        self._stopping = False
        self._retry = RETRY_MIN
        self._outage = False
        self._reconnect = False
        self._sender_sleeps = False
        self._configure(options)

    # fail2ban's reload keeps an action that has reload() and clearAllParams(), and calls
    # reload() with the options read anew; without them it would replace the instance and
    # then drop it as obsolete, leaving the jail without netban.
    def clearAllParams(self):
        pass

    def reload(self, **options):
        with self._changed:
            self._configure(options)
            self._reconnect = True  # the sender reconnects before its next request

    def _configure(self, options):
        jail, action_name = self._jail, self._name
        self.source = options.get("name") or jail.name
        if not self.source or len(self.source) > 64 or not set(self.source) <= SOURCE_CHARS:
            raise ValueError(
                "netban: jail name %r cannot be a netban source (use up to 64 letters, digits, "
                "'.', '_', '-', '@'; or give the action a name=... option)" % self.source)
        # Like the client: the named configuration, else the default one if it exists.
        self.config = options.get("config") or None
        self.socket_path = options.get("socket") or None
        config = self.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
        if self.socket_path is None and config:
            self.socket_path = _socket_from_config(config)
        self.socket_path = self.socket_path or DEFAULT_SOCKET
        self.client = options.get("netban") or DEFAULT_CLIENT
        self.timeout = float(options.get("timeout", 5))
        self.keep_on_stop = _yes(options.get("keep_on_stop", "yes"))
        spool_dir = options.get("spool_dir") or DEFAULT_SPOOL_DIR
        self.spool = os.path.join(spool_dir, "%s.%s.jsonl" % (self.source, action_name))

    # ---- fail2ban's interface -----------------------------------------------------------

    def start(self):
        self._ensure_sender()

    def ban(self, aInfo):
        self._enqueue({
            "op": "ban",
            "prefixes": [str(aInfo["ip"])],
            "source": self.source,
            "bantime": int(aInfo["bantime"]),
            "reason": None,
            "failures": int(aInfo["failures"]),
            "origin_host": None,
            "restored": bool(int(aInfo["restored"])),
        })

    def reban(self, aInfo):
        self.ban(aInfo)

    @property
    def _prolongable(self):
        return True

    def prolong(self, aInfo):
        # bantime.increment: the ban is asked again with the later expiry, as the shell
        # action's actionprolong does.
        self.ban(aInfo)

    def unban(self, aInfo):
        self._enqueue(self._unban_request([str(aInfo["ip"])]))

    def flush(self):
        """fail2ban stops or reloads the jail: bans stay unless keep_on_stop = no. Returns True
        so fail2ban does not unban address by address."""
        if not self.keep_on_stop:
            request = self._unban_request([])
            request["all_of_source"] = True
            self._enqueue(request)
        self._wait_idle(self.timeout * 2 + 1)
        return True

    def stop(self):
        # The sender delivers (or spools) what is queued, then ends; it waits at most
        # `timeout` for the daemon and `timeout` for the client.
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._sender is not None:
            self._sender.join(self.timeout * 2 + 1)
        with self._changed:
            left = list(self._queue)
            self._queue.clear()
        if left:
            # The sender is stuck on a daemon that does not answer: keep what is queued.
            self._spool_append(left)
        pending = len(self._spool_read()[0])
        if pending:
            self._logSys.warning(
                "[%s] netban: %d request(s) wait in %s; they are sent when fail2ban starts "
                "again (or record them with `netban ban`)", self.source, pending, self.spool)
        self._disconnect()

    # ---- queue ----------------------------------------------------------------------------

    def _unban_request(self, prefixes):
        return {"op": "unban", "prefixes": prefixes, "source": self.source,
                "origin_host": None, "all_of_source": False}

    def _enqueue(self, request):
        self._ensure_sender()
        with self._changed:
            self._queue.append(request)
            # Wake the sender only if it sleeps: while it waits for the daemon, what arrives
            # joins the next batch (and fail2ban's thread keeps the interpreter to itself).
            if self._sender_sleeps:
                self._changed.notify_all()

    def _ensure_sender(self):
        sender = self._sender
        if sender is not None and sender.is_alive():
            return
        with self._changed:
            if self._sender is not None and self._sender.is_alive():
                return
            self._stopping = False
            self._sender = threading.Thread(
                target=self._run, name="netban-%s" % self.source, daemon=True)
            self._sender.start()

    def _wait_idle(self, seconds):
        """Waits until every queued request was delivered or spooled; False on timeout."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    @staticmethod
    def _batch_key(request):
        if request["op"] == "ban":
            return ("ban", request["bantime"], request["failures"], request["restored"])
        if request.get("all_of_source"):
            return None  # never merged
        return ("unban",)

    def _take_batch(self):
        """Removes the longest run of mergeable requests from the queue (caller holds the
        lock) and returns it as one request."""
        first = self._queue.popleft()
        key = self._batch_key(first)
        if key is None:
            return first
        merged = dict(first, prefixes=list(first["prefixes"]))
        while (self._queue and len(merged["prefixes"]) < MAX_BATCH
               and self._batch_key(self._queue[0]) == key):
            merged["prefixes"].extend(self._queue.popleft()["prefixes"])
        return merged

    def _run(self):
        """The sender thread: delivers the spool first (in order), then the queue."""
        while True:
            held = None  # requests taken from the queue, until delivered or spooled
            with self._changed:
                while not self._queue and not self._stopping and not self._spool_count():
                    self._sender_sleeps = True
                    self._changed.wait()
                    self._sender_sleeps = False
                if self._stopping and not self._queue:
                    return
                spooled = self._spool_count() > 0
                if self._queue:
                    # Behind a non-empty spool, later requests wait in it, durably.
                    held = list(self._queue) if spooled else [self._take_batch()]
                    if spooled:
                        self._queue.clear()
                    self._busy = True
            try:
                if spooled:
                    if held:
                        self._spool_append(held)
                        held = None
                        self._idle()
                    self._drain_spool()
                else:
                    self._deliver_or_spool(held[0])
                    held = None
            except Exception as e:  # never let the thread die, never drop what it held
                self._logSys.error("[%s] netban: sender error: %s", self.source, e)
                for request in held or []:
                    self._spool_or_report(request)
                with self._changed:
                    self._changed.wait(RETRY_MIN)
            finally:
                self._idle()

    def _idle(self):
        """What the sender took from the queue is delivered or durably spooled."""
        with self._changed:
            self._busy = False
            self._changed.notify_all()

    def _deliver_or_spool(self, request):
        try:
            self._deliver(request)
        except Undelivered as e:
            self._logSys.error(
                "[%s] netban: %s; %d address(es) kept in %s and retried", self.source, e,
                max(1, len(request["prefixes"])), self.spool)
            self._spool_or_report(request)

    def _spool_or_report(self, request):
        """Spools `request`; if even that fails, says loudly what was not recorded."""
        try:
            self._spool_append([request])
        except OSError as spool_error:
            self._logSys.critical(
                "[%s] netban: NOT RECORDED: %s %s (the spool %s failed: %s)", self.source,
                request["op"], " ".join(request["prefixes"]) or "--all", self.spool,
                spool_error)

    def _drain_spool(self):
        """Delivers the spooled requests in order; on failure keeps the rest and backs off."""
        requests, consumed = self._spool_read()
        for i, request in enumerate(requests):
            try:
                self._deliver(request)
            except Exception as e:  # Undelivered, or anything unexpected: keep it, retry

                self._spool_rewrite(requests[i:], consumed)
                # The first failure is a warning; retries of the same outage are debug lines.
                log = self._logSys.warning if self._retry == RETRY_MIN else self._logSys.debug
                log("[%s] netban: %s; %d request(s) still spooled in %s, retrying (next in "
                    "%.1f s)", self.source, e, len(requests) - i, self.spool, self._retry)
                with self._changed:
                    if not self._stopping:
                        self._changed.wait(self._retry)
                self._retry = min(self._retry * 2, RETRY_MAX)
                return
        self._spool_rewrite([], consumed)
        self._retry = RETRY_MIN
        if requests:
            self._logSys.notice("[%s] netban: delivered %d spooled request(s)",
                                self.source, len(requests))

    # ---- delivery -------------------------------------------------------------------------

    def _deliver(self, request):
        """Records `request` through the daemon, or the client when the daemon is down.
        Raises Undelivered when neither recorded it."""
        try:
            body = self._call(request)
        except Refused as e:
            if len(request["prefixes"]) > 1:
                # The daemon refuses a request as a whole: one address it cannot parse must
                # not take the others of its batch with it, so they go one by one.
                for prefix in request["prefixes"]:
                    self._deliver(dict(request, prefixes=[prefix]))
                return
            self._logSys.error("[%s] netban refused the request: %s", self.source, e)
            return
        except DaemonDown as e:
            # Logged once per outage; until the daemon answers, requests go through the client.
            log = self._logSys.debug if self._outage else self._logSys.warning
            self._outage = True
            log("[%s] netban: daemon not reachable (%s); recording through %s until it "
                "answers", self.source, e, self.client)
            self._log_results(request, self._call_client(request))
            return
        except Uncertain as e:
            # Whether the daemon recorded it is unknown: ask again as a restore (the daemon
            # skips a ban it holds), through a new connection or else the spool.
            raise Undelivered("no answer from the daemon (%s)" % e) from e
        self._log_results(request, body.get("results", []))

    def _call(self, request):
        """One request over the persistent connection. Raises DaemonDown if it was not sent,
        Uncertain if it was sent and not answered."""
        line = (json.dumps(_wire(request), separators=(",", ":")) + "\n").encode()
        for attempt in (0, 1):
            conn = self._connect()
            try:
                conn.sendall(line)
            except OSError as e:
                # The daemon went away since the last request: nothing of this line counts
                # (the daemon acts only on whole lines). Reconnect once.
                self._disconnect()
                if attempt:
                    raise DaemonDown(str(e))
                continue
            try:
                answer = self._read_line(conn)
            except (OSError, ValueError) as e:
                self._disconnect()
                if request["op"] == "ban":
                    request["restored"] = True
                raise Uncertain(str(e))
            try:
                response = json.loads(answer)
            except ValueError as e:
                self._disconnect()
                if request["op"] == "ban":
                    request["restored"] = True
                raise Uncertain("unreadable answer: %s" % e)
            if self._outage:
                self._outage = False
                self._logSys.notice("[%s] netban: the daemon answers again", self.source)
            if response.get("status") == "ok":
                return response["body"]
            message = response.get("message", "")
            if message.startswith("malformed request"):
                # Retrying cannot help: an address netban cannot parse (fail2ban's <ip> is
                # foreign input), or a jail name the daemon refuses.
                raise Refused(message)
            # The daemon could not record it (ledger error, shutting down): the client writes
            # the ledger directly if the daemon is gone, else it is spooled.
            self._disconnect()
            raise DaemonDown("the daemon answered: %s" % message)
        raise DaemonDown("cannot send")

    def _connect(self):
        if self._reconnect:
            self._reconnect = False
            self._disconnect()
        if self._conn is not None:
            # A connection the daemon closed (restart) reads as readable at EOF: replace it
            # before sending, so a send is never lost to a stale connection.
            readable, _, _ = select.select([self._conn], [], [], 0)
            if not readable:
                return self._conn
            self._disconnect()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(self.timeout)
        try:
            conn.connect(self.socket_path)
        except OSError as e:
            conn.close()
            raise DaemonDown("%s: %s" % (self.socket_path, e.strerror or e))
        self._conn = conn
        self._buffer = b""
        return conn

    def _disconnect(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        self._conn = None
        self._buffer = b""

    def _read_line(self, conn):
        while b"\n" not in self._buffer:
            chunk = conn.recv(65536)  # bounded by the socket timeout
            if not chunk:
                raise ValueError("the daemon closed the connection without answering")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _call_client(self, request):
        """Runs `netban ban|unban ... --json` (which records in the ledger when the daemon is
        down) and returns its per-address results. Raises Undelivered."""
        argv = [self.client]
        if self.config:
            argv += ["--config", self.config]
        argv += ["--socket", self.socket_path]
        if request["op"] == "ban":
            argv += ["ban", "--stdin", "--json", "--source", request["source"],
                     "--bantime", str(request["bantime"]),
                     "--restored", "1" if request["restored"] else "0"]
            if request["failures"] is not None:
                argv += ["--failures", str(request["failures"])]
        elif request.get("all_of_source"):
            argv += ["unban", "--all", "--json", "--source", request["source"]]
        else:
            argv += ["unban", "--stdin", "--json", "--source", request["source"]]
        stdin = "".join(p + "\n" for p in request["prefixes"])
        try:
            done = subprocess.run(argv, input=stdin.encode(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=self.timeout, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise Undelivered("the netban client could not run (%s)" % e) from e
        try:
            results = json.loads(done.stdout)
        except ValueError:
            results = None
        if not isinstance(results, list):
            # No per-address answer: the client failed before deciding anything.
            raise Undelivered("the netban client failed (exit %d): %s" % (
                done.returncode, done.stderr.decode(errors="replace").strip()))
        return results

    def _log_results(self, request, results):
        for r in results:
            if r.get("error"):
                self._logSys.error("[%s] netban refused %s %s: %s", self.source,
                                   request["op"], r.get("prefix"), r["error"])

    # ---- spool: one JSON request per line, appended and fsynced ----------------------------
    # The sender appends and drains; stop() may append while a stuck sender still runs, so
    # every spool operation holds _spool_lock, and a drain keeps lines appended meanwhile.

    def _spool_count(self):
        try:
            return os.path.getsize(self.spool)
        except OSError:
            return 0

    def _spool_read(self):
        """The spooled requests and the number of bytes they came from."""
        with self._spool_lock:
            try:
                with open(self.spool, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                return [], 0
        return self._parse_spool(data), len(data)

    def _parse_spool(self, data):
        requests = []
        for line in data.splitlines():
            try:
                requests.append(json.loads(line))
            except ValueError:
                # A torn last line (fail2ban killed while appending) was never accepted.
                self._logSys.warning("[%s] netban: skipping a torn line in %s",
                                     self.source, self.spool)
        return requests

    def _spool_append(self, requests):
        if not requests:
            return
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in requests).encode()
        with self._spool_lock:
            directory = os.path.dirname(self.spool)
            new = not os.path.exists(self.spool)
            if new:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(self.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                _fsync_dir(directory)

    def _spool_rewrite(self, remaining, consumed):
        """Replaces the first `consumed` bytes of the spool with `remaining` requests."""
        with self._spool_lock:
            try:
                with open(self.spool, "rb") as f:
                    f.seek(consumed)
                    tail = f.read()
            except FileNotFoundError:
                tail = b""
            data = "".join(json.dumps(r, separators=(",", ":")) + "\n"
                           for r in remaining).encode() + tail
            directory = os.path.dirname(self.spool)
            if not data:
                try:
                    os.unlink(self.spool)
                except FileNotFoundError:
                    return
                _fsync_dir(directory)
                return
            tmp = self.spool + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.spool)
            _fsync_dir(directory)


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


Action = NetbanAction

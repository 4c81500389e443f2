#!/usr/bin/env python3
"""netban's own TEST EMULATOR of a Cisco IOS router's ACL CLI. Test code of the netban project:
not Cisco software, not part of fakenos.

It runs PyPI fakenos 1.2.1's SSH server (paramiko transport, host key, TCP listener, session
tracking, watchdog) with a stateful shell plugin written here, because fakenos's cisco_ios
commands are canned (no configuration mode, no state). The plugin is modelled on IOS's real
prompts, output and error formats:

  R1>  enable / Password:  R1#  configure terminal  R1(config)#
  ip access-list extended NAME -> R1(config-ext-nacl)#   [SEQ] deny|permit ip SRC DST, no SEQ
  ipv6 access-list NAME        -> R1(config-ipv6-acl)#   deny ipv6 SRC DST [sequence N]
  object-group network NAME    -> R1(config-network-group)#   host A | NET MASK
  show ip access-lists [NAME]   "Extended IP access list NAME" / "    10 deny ip host A any (3 matches)"
  show ipv6 access-list [NAME]  "IPv6 access list NAME" / "    deny ipv6 host 2001:DB8::1 any sequence 10"
  show object-group [name NAME] "Network object group NAME" / " host A"
  errors: "% Invalid input detected at '^' marker." under a caret line, "% Incomplete command.",
          "% Ambiguous command:  \"x\"", "% Duplicate sequence number"
  write memory -> "Building configuration..." "[OK]"

Sequence numbers default to the highest + 10; a simulated reload (SIGUSR1) brings back the saved
(startup) configuration renumbered 10, 20, ... and closes every session, as a real reload does.

Two deliberate departures from fakenos's own server, both in `NetbanSshServer` below:
- fakenos reads the channel one byte at a time with a 10 ms sleep per byte, which makes a typed
  line cost ~0.3 s (a hundred times slower than a router); the line-buffered taps here keep
  IOS's order (prompt, echo of the line, its output, next prompt) without the sleeps;
- public-key authentication (fakenos offers password only), for the key-auth test.

Fault injection for tests: SIGUSR1 = reload, SIGUSR2 = drop every session,
--drop-every-lines N = drop every session at every Nth ACL/group line processed,
--refuse ADDR = answer any ACL/group line naming ADDR with the invalid-input error.

Usage: ios_acl_shell.py --hostname R1 --username u --password p [--enable-secret s]
       [--authorized-key FILE.pub] ...   prints "READY port=N fingerprint=SHA256:... key=TYPE B64"
       ios_acl_shell.py --make-client-key PATH   writes an RSA key pair PATH, PATH.pub
"""

import argparse
import base64
import copy
import hashlib
import ipaddress
import logging
import queue
import signal
import socket
import sys
import threading

import paramiko
from fakenos import FakeNOS
from fakenos.plugins.servers import ssh_server_paramiko as fakenos_ssh
from fakenos.plugins.shell.cmd_shell import CMDShell

log = logging.getLogger("ios_acl_shell")

MAX_SEQ = 2147483647
INVALID = "% Invalid input detected at '^' marker."
INCOMPLETE = "% Incomplete command."


class CliError(Exception):
    """A refusal: `column` is where the caret goes (None: no caret line)."""

    def __init__(self, message, column=None):
        super().__init__(message)
        self.message = message
        self.column = column


# ---- router state, shared by every session of the emulator ------------------------------------


class Acl:
    def __init__(self, kind):
        self.kind = kind  # "ext" or "ipv6"
        self.entries = []  # [seq, text, hits], sorted by seq

    def next_seq(self):
        return (self.entries[-1][0] if self.entries else 0) + 10

    def add(self, seq, text):
        if seq is None:
            seq = self.next_seq()
            if seq > MAX_SEQ:
                raise CliError("% Exceeded maximum sequence number.")
        if any(e[0] == seq for e in self.entries):
            raise CliError("% Duplicate sequence number")
        if any(e[1] == text for e in self.entries):
            return  # IOS ignores an entry identical to an existing one
        self.entries.append([seq, text, 0])
        self.entries.sort(key=lambda e: e[0])

    def remove_seq(self, seq):
        self.entries = [e for e in self.entries if e[0] != seq]

    def remove_text(self, text):
        for i, e in enumerate(self.entries):
            if e[1] == text:
                del self.entries[i]
                return

    def renumber(self):
        for i, e in enumerate(self.entries):
            e[0] = (i + 1) * 10
            e[2] = 0


class Router:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.acls = {}
        self.groups = {}
        self.startup = ({}, {})
        self.lines_seen = 0
        self.drop_all = lambda: None

    def reload(self):
        with self.lock:
            acls, groups = copy.deepcopy(self.startup)
            for acl in acls.values():
                acl.renumber()
            self.acls, self.groups = acls, groups
        log.warning("simulated reload: startup configuration restored and renumbered")
        self.drop_all()

    def save(self):
        with self.lock:
            self.startup = copy.deepcopy((self.acls, self.groups))

    def count_line(self):
        """Counts one ACL/group line; True when the session must drop now."""
        with self.lock:
            self.lines_seen += 1
            n = self.args.drop_every_lines
            return n is not None and self.lines_seen % n == 0


ROUTER = None


# ---- parsing of ACE operands --------------------------------------------------------------------


class Tokens:
    """The words of a line with their columns, consumed left to right."""

    def __init__(self, line):
        self.words = []
        i = 0
        while i < len(line):
            if line[i] == " ":
                i += 1
                continue
            j = i
            while j < len(line) and line[j] != " ":
                j += 1
            self.words.append((line[i:j], i))
            i = j
        self.pos = 0
        self.end = len(line)

    def peek(self):
        return self.words[self.pos][0] if self.pos < len(self.words) else None

    def col(self):
        return self.words[self.pos][1] if self.pos < len(self.words) else self.end

    def take(self):
        if self.pos >= len(self.words):
            raise CliError(INCOMPLETE)
        word, _ = self.words[self.pos]
        self.pos += 1
        return word

    def done(self):
        return self.pos >= len(self.words)

    def invalid(self):
        return CliError(INVALID, self.col())


def keyword(t, choices):
    """Consumes one keyword, IOS-style: any unique prefix is accepted."""
    col = t.col()
    word = t.take()
    matches = [c for c in choices if c.startswith(word.lower())]
    if word.lower() in choices:
        return word.lower()
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise CliError('%% Ambiguous command:  "%s"' % word)
    raise CliError(INVALID, col)


def v4(t):
    col = t.col()
    try:
        return ipaddress.IPv4Address(t.take())
    except ipaddress.AddressValueError:
        raise CliError(INVALID, col)


def operand_v4(t):
    """any | host A | A WILDCARD, normalised the way IOS shows it."""
    word = t.peek()
    if word is None:
        raise CliError(INCOMPLETE)
    if word == "any":
        t.take()
        return "any"
    if word == "host":
        t.take()
        return "host %s" % v4(t)
    addr = v4(t)
    wild = v4(t)
    w = int(wild)
    net = ipaddress.IPv4Address(int(addr) & ~w & 0xFFFFFFFF)
    if w == 0:
        return "host %s" % net
    if w == 0xFFFFFFFF:
        return "any"
    return "%s %s" % (net, wild)


def operand_v6(t):
    """any | host A | P/L, in IOS's upper case."""
    word = t.peek()
    if word is None:
        raise CliError(INCOMPLETE)
    if word == "any":
        t.take()
        return "any"
    col = t.col()
    if word == "host":
        t.take()
        col = t.col()
        try:
            return "host %s" % str(ipaddress.IPv6Address(t.take())).upper()
        except ipaddress.AddressValueError:
            raise CliError(INVALID, col)
    word = t.take()
    if "/" not in word:
        raise CliError(INVALID, col)
    try:
        net = ipaddress.IPv6Network(word, strict=False)
    except ValueError:
        raise CliError(INVALID, col)
    return str(net).upper()


def ace(t, family):
    """`deny|permit PROTO SRC DST [log]` → canonical text."""
    action = keyword(t, ["deny", "permit"])
    protos = ["ip", "tcp", "udp", "icmp"] if family == 4 else ["ipv6", "tcp", "udp", "icmp"]
    proto = keyword(t, protos)
    operand = operand_v4 if family == 4 else operand_v6
    src = operand(t)
    dst = operand(t)
    text = "%s %s %s %s" % (action, proto, src, dst)
    if proto in ("tcp", "udp") and t.peek() == "eq":
        t.take()
        text += " eq %s" % t.take()
    if t.peek() == "log":
        t.take()
        text += " log"
    return text


# ---- the shell ----------------------------------------------------------------------------------


class IosAclShell(CMDShell):
    """One CLI session. Registered as fakenos's "CMDShell" plugin."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.host = self.base_prompt
        self.mode = "exec"  # exec, priv, config, ext-nacl, ipv6-acl, network-group
        self.current = None  # name of the ACL / group being edited
        self.awaiting_secret = False
        self.set_prompt()

    def set_prompt(self):
        self.prompt = {
            "exec": "%s>",
            "priv": "%s#",
            "config": "%s(config)#",
            "ext-nacl": "%s(config-ext-nacl)#",
            "ipv6-acl": "%s(config-ipv6-acl)#",
            "network-group": "%s(config-network-group)#",
        }[self.mode] % self.host

    def say(self, text):
        for line in text.splitlines():
            self.stdout.write(line + "\r\n")

    def onecmd(self, line):
        if line == "EOF":
            return True
        if self.awaiting_secret:
            self.awaiting_secret = False
            self.stdin.echo = True
            if line == ROUTER.args.enable_secret:
                self.mode = "priv"
            else:
                self.say("% Bad secrets\r\n")
            self.set_prompt()
            return False
        line = line.strip()
        if not line or line.startswith("!"):
            return False
        try:
            with ROUTER.lock:
                stop = self.dispatch(line)
        except CliError as e:
            if e.column is not None:
                self.say(" " * (len(self.prompt) + e.column) + "^")
            self.say(e.message)
            self.say("")
            stop = False
        if not self.awaiting_secret:
            self.set_prompt()
        return stop

    def dispatch(self, line):
        t = Tokens(line)
        if self.mode in ("exec", "priv"):
            return self.exec_command(t, line)
        if self.mode == "config":
            return self.config_command(t)
        return self.list_command(t, line)

    # exec and privileged exec
    def exec_command(self, t, line):
        words = ["enable", "disable", "exit", "logout", "show", "terminal"]
        if self.mode == "priv":
            words += ["configure", "write", "copy"]
        cmd = keyword(t, words)
        if cmd in ("exit", "logout"):
            return True
        if cmd == "enable":
            if self.mode == "exec":
                if ROUTER.args.enable_secret is None:
                    raise CliError("% No password set")
                self.awaiting_secret = True
                self.stdin.echo = False
                self.prompt = "Password: "
                return False
            return False
        if cmd == "disable":
            self.mode = "exec"
        elif cmd == "terminal":
            what = keyword(t, ["length", "width", "monitor"])
            if what != "monitor":
                col = t.col()
                value = t.take()
                limit = 512 if what == "length" else 512
                if not value.isdigit() or int(value) > limit:
                    raise CliError(INVALID, col)
        elif cmd == "configure":
            if not t.done():
                keyword(t, ["terminal"])
            self.say("Enter configuration commands, one per line.  End with CNTL/Z.")
            self.mode = "config"
        elif cmd == "write":
            if not t.done():
                keyword(t, ["memory"])
            self.write_memory()
        elif cmd == "copy":
            keyword(t, ["running-config"])
            keyword(t, ["startup-config"])
            self.write_memory()
        elif cmd == "show":
            self.show(t, line)
        if not t.done():
            raise t.invalid()
        return False

    def write_memory(self):
        ROUTER.save()
        self.say("Building configuration...")
        self.say("[OK]")

    def show(self, t, line):
        if ROUTER.args.flood_show:
            block = "\r\n".join("   %d deny ip host 203.0.113.%d any" % (i, i % 250) for i in range(1000))
            try:
                while True:
                    self.stdout.write(block + "\r\n")
            except Exception:  # the client closed the channel
                return
        what = t.peek()
        if what is None:
            raise CliError(INCOMPLETE)
        kw = keyword(t, ["ip", "ipv6", "access-lists", "object-group", "running-config", "version", "clock"])
        if kw in ("running-config", "version", "clock"):
            # fakenos's canned outputs
            super().default(line)
            return
        if kw == "ip":
            keyword(t, ["access-lists"])
            self.show_acls("ext", t.take() if not t.done() else None)
        elif kw == "access-lists":
            self.show_acls("ext", t.take() if not t.done() else None)
        elif kw == "ipv6":
            keyword(t, ["access-list"])
            self.show_acls("ipv6", t.take() if not t.done() else None)
        elif kw == "object-group":
            name = None
            if not t.done():
                keyword(t, ["name"])
                name = t.take()
            for gname, members in sorted(ROUTER.groups.items()):
                if name is None or gname == name:
                    self.say("Network object group %s" % gname)
                    for m in members:
                        self.say(" %s" % m)

    def show_acls(self, kind, name):
        for aname, acl in sorted(ROUTER.acls.items()):
            if acl.kind != kind or (name is not None and aname != name):
                continue
            if kind == "ext":
                self.say("Extended IP access list %s" % aname)
            else:
                self.say("IPv6 access list %s" % aname)
            for entry in acl.entries:
                seq, text, hits = entry
                counter = ""
                if hits == 1:
                    counter = " (1 match)"
                elif hits > 1:
                    counter = " (%d matches)" % hits
                if kind == "ext":
                    self.say("    %d %s%s" % (seq, text, counter))
                else:
                    self.say("    %s%s sequence %d" % (text, counter, seq))
                # Every show counts as traffic seen, so counters appear from the second show.
                entry[2] += 1

    # global configuration
    def config_command(self, t):
        cmd = keyword(t, ["ip", "ipv6", "object-group", "no", "end", "exit", "hostname"])
        if cmd in ("end", "exit"):
            self.mode = "priv"
        elif cmd == "hostname":
            self.host = t.take()
        elif cmd == "ip":
            keyword(t, ["access-list"])
            keyword(t, ["extended"])
            self.enter_acl("ext", t.take())
        elif cmd == "ipv6":
            keyword(t, ["access-list"])
            self.enter_acl("ipv6", t.take())
        elif cmd == "object-group":
            keyword(t, ["network"])
            name = t.take()
            ROUTER.groups.setdefault(name, [])
            self.current = name
            self.mode = "network-group"
        elif cmd == "no":
            kw = keyword(t, ["ip", "ipv6", "object-group"])
            if kw == "ip":
                keyword(t, ["access-list"])
                keyword(t, ["extended"])
                ROUTER.acls.pop(t.take(), None)
            elif kw == "ipv6":
                keyword(t, ["access-list"])
                ROUTER.acls.pop(t.take(), None)
            else:
                keyword(t, ["network"])
                ROUTER.groups.pop(t.take(), None)
        if not t.done():
            raise t.invalid()
        return False

    def enter_acl(self, kind, name):
        acl = ROUTER.acls.get(name)
        if acl is None:
            acl = ROUTER.acls[name] = Acl(kind)
        elif acl.kind != kind:
            raise CliError("%% Access-list type conflicts with existing list %s" % name)
        self.current = name
        self.mode = "ext-nacl" if kind == "ext" else "ipv6-acl"

    # inside an ACL or object group
    def list_command(self, t, line):
        first = t.peek()
        if first in ("ip", "ipv6", "object-group", "hostname"):
            # Like IOS: a global configuration command typed in a sub-mode leaves the sub-mode.
            self.mode = "config"
            return self.config_command(t)
        if first in ("exit", "end"):
            t.take()
            self.mode = "config" if first == "exit" else "priv"
            return False
        if ROUTER.count_line():
            log.warning("dropping every session at line %d (--drop-every-lines)", ROUTER.lines_seen)
            threading.Thread(target=ROUTER.drop_all, daemon=True).start()
            return True
        for addr in ROUTER.args.refuse or []:
            if addr.lower() in line.lower().split():
                # A platform refusing this entry; the caret under the address.
                raise CliError(INVALID, line.lower().find(addr.lower()))
        if self.mode == "network-group":
            self.group_line(t)
        else:
            self.acl_line(t)
        if not t.done():
            raise t.invalid()
        return False

    def acl_line(self, t):
        acl = ROUTER.acls[self.current]
        family = 4 if acl.kind == "ext" else 6
        negate = t.peek() == "no"
        if negate:
            t.take()
        word = t.peek()
        if word is None:
            raise CliError(INCOMPLETE)
        if family == 4 and word.isdigit():
            seq = int(t.take())
            if not 1 <= seq <= MAX_SEQ:
                raise CliError(INVALID, t.col())
            if negate:
                acl.remove_seq(seq)
                return
            if t.peek() == "remark":
                t.take()
                acl.add(seq, "remark " + " ".join(w for w, _ in t.words[t.pos:]))
                t.pos = len(t.words)
                return
            acl.add(seq, ace(t, 4))
            return
        if word == "sequence":
            t.take()
            col = t.col()
            value = t.take()
            if not value.isdigit() or not 1 <= int(value) <= MAX_SEQ:
                raise CliError(INVALID, col)
            if negate:
                acl.remove_seq(int(value))
                return
            acl.add(int(value), ace(t, family))
            return
        if word == "remark":
            t.take()
            text = "remark " + " ".join(w for w, _ in t.words[t.pos:])
            t.pos = len(t.words)
            acl.remove_text(text) if negate else acl.add(None, text)
            return
        text = ace(t, family)
        seq = None
        if family == 6 and t.peek() == "sequence":
            t.take()
            col = t.col()
            value = t.take()
            if not value.isdigit() or not 1 <= int(value) <= MAX_SEQ:
                raise CliError(INVALID, col)
            seq = int(value)
        if negate:
            acl.remove_text(text)
        else:
            acl.add(seq, text)

    def group_line(self, t):
        members = ROUTER.groups[self.current]
        negate = t.peek() == "no"
        if negate:
            t.take()
        word = t.peek()
        if word is None:
            raise CliError(INCOMPLETE)
        if word == "description":
            t.pos = len(t.words)
            return
        if word == "host":
            t.take()
            member = "host %s" % v4(t)
        else:
            addr = v4(t)
            col = t.col()
            mask = v4(t)
            try:
                net = ipaddress.IPv4Network("%s/%s" % (addr, mask), strict=False)
            except ValueError:
                raise CliError(INVALID, col)
            member = "%s %s" % (net.network_address, net.netmask)
        if negate:
            if member in members:
                members.remove(member)
        elif member not in members:
            members.append(member)


# ---- the SSH side: fakenos's server with line-buffered taps and public-key auth ----------------


class ShellInput:
    """The shell's stdin: whole lines, handed over when the shell asks for the next one."""

    def __init__(self, run):
        self.lines = queue.Queue()
        self.wants_line = threading.Event()
        self.run = run
        self.echo = True

    def readline(self):
        self.wants_line.set()
        while self.run.is_set():
            try:
                # cmd.Cmd takes "" for end of input, so a line keeps its line end here.
                return self.lines.get(timeout=0.2) + "\n"
            except queue.Empty:
                continue
        return ""


class ShellOutput:
    """The shell's stdout: text in order, written to the channel by one thread."""

    def __init__(self):
        self.chunks = queue.Queue()

    def write(self, text):
        self.chunks.put(text)

    def flush(self):
        pass


class AuthInterface(fakenos_ssh.ParamikoSshServerInterface):
    def __init__(self, username, password, authorized):
        super().__init__(username=username, password=password)
        self.authorized = authorized

    def get_allowed_auths(self, username):
        return "publickey,password" if self.authorized else "password"

    def check_auth_publickey(self, username, key):
        if username == self.username and (key.get_name(), key.get_base64()) in self.authorized:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED


class NetbanSshServer(fakenos_ssh.ParamikoSshServer):
    """fakenos's ParamikoSshServer with the connection handling replaced (see module doc)."""

    authorized = set()

    def _bind_sockets(self):
        # fakenos calls listen() later, in its listener thread: listen here already, so the
        # port accepts connections once start() returns and READY is printed (under load the
        # tests otherwise raced the thread and got "connection refused").
        super()._bind_sockets()
        self._socket.listen()

    def connection_function(self, client, is_running):
        run = threading.Event()
        run.set()
        # Small writes (a prompt, one output line) go out at once, as a router's do; with
        # Nagle on, each would wait for the client's delayed ACK (~40 ms).
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = paramiko.Transport(client)
        with self._active_sessions_lock:
            self._active_sessions.add(session)
        threads = []
        try:
            session.add_server_key(self._ssh_server_key)
            session.start_server(server=AuthInterface(self.username, self.password, self.authorized))
            channel = session.accept(20)
            if channel is None:
                return
            shell_in, shell_out = ShellInput(run), ShellOutput()

            def reader():
                pending = b""
                while run.is_set():
                    try:
                        data = channel.recv(65536)
                    except (OSError, EOFError):
                        break
                    if not data:
                        break
                    pending += data
                    while True:
                        ends = [i for i in (pending.find(b"\r"), pending.find(b"\n")) if i >= 0]
                        if not ends:
                            break
                        i = min(ends)
                        line, skip = pending[:i], 2 if pending[i : i + 2] == b"\r\n" else 1
                        pending = pending[i + skip :]
                        # IOS reads typed-ahead input only when it is back at a prompt.
                        while run.is_set() and not shell_in.wants_line.wait(0.2):
                            pass
                        shell_in.wants_line.clear()
                        text = line.decode("utf-8", "replace")
                        shell_out.write((text if shell_in.echo else "") + "\r\n")
                        shell_in.lines.put(text)
                run.clear()

            def writer():
                while run.is_set() or not shell_out.chunks.empty():
                    try:
                        text = shell_out.chunks.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    try:
                        channel.sendall(text.encode("utf-8"))
                    except (OSError, EOFError):
                        break

            for target in (reader, writer):
                th = threading.Thread(target=target, daemon=True)
                th.start()
                threads.append(th)
            shell = self.shell(
                stdin=shell_in,
                stdout=shell_out,
                nos=self.nos,
                nos_inventory_config=self.nos_inventory_config,
                is_running=is_running,
                **self.shell_configuration,
            )
            shell.intro = ""
            watchdog = threading.Thread(target=self.watchdog, args=(is_running, run, session, shell), daemon=True)
            watchdog.start()
            shell.cmdloop()
        except Exception:  # noqa: BLE001 - a failed session must not kill the emulator
            log.exception("session failed")
        finally:
            run.clear()
            try:
                session.close()
            finally:
                with self._active_sessions_lock:
                    self._active_sessions.discard(session)
            for th in threads:
                th.join(timeout=2)


def fingerprint(key):
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def make_client_key(path):
    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(path)
    with open(path + ".pub", "w", encoding="ascii") as f:
        f.write("%s %s netban-test\n" % (key.get_name(), key.get_base64()))


def main():
    global ROUTER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostname", default="R1")
    parser.add_argument("--username", default="netban")
    parser.add_argument("--password", default="netban")
    parser.add_argument("--enable-secret")
    parser.add_argument("--authorized-key", action="append", default=[])
    parser.add_argument("--refuse", action="append")
    parser.add_argument("--drop-every-lines", type=int)
    # A misbehaving router for the bounded-read test: every `show` answers with endless
    # output and never a prompt (until the client goes away).
    parser.add_argument("--flood-show", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--make-client-key")
    args = parser.parse_args()
    if args.make_client_key:
        make_client_key(args.make_client_key)
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    ROUTER = Router(args)
    for path in args.authorized_key:
        with open(path, encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    NetbanSshServer.authorized.add((parts[0], parts[1]))
    port = args.port
    if port == 0:
        port = fakenos_ssh_free_port()
    inventory = {
        "hosts": {
            args.hostname: {
                "username": args.username,
                "password": args.password,
                "port": port,
                "platform": "cisco_ios",
                "server": {"plugin": "ParamikoSshServer", "configuration": {"address": "127.0.0.1", "timeout": 1}},
            }
        }
    }
    net = FakeNOS(inventory=inventory)
    net.shell_plugins["CMDShell"] = IosAclShell
    net.servers_plugins["ParamikoSshServer"] = NetbanSshServer
    net.start()
    host = net.hosts[args.hostname]
    server = host.server

    def drop_all():
        with server._active_sessions_lock:
            count = len(server._active_sessions)
        server._close_active_connections()
        log.warning("closed %d sessions", count)

    ROUTER.drop_all = drop_all
    key = host.server._ssh_server_key
    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=ROUTER.reload, daemon=True).start())
    signal.signal(signal.SIGUSR2, lambda *_: threading.Thread(target=ROUTER.drop_all, daemon=True).start())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("READY port=%d fingerprint=%s key=%s %s" % (port, fingerprint(key), key.get_name(), key.get_base64()), flush=True)
    while not stop.wait(0.5):
        pass
    net.stop()
    return 0


def fakenos_ssh_free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())

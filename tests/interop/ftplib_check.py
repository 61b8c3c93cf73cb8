#!/usr/bin/env python3
"""Drive a Ferry server with Python's ftplib; exit 0 only if every check passed.

Usage: ftplib_check.py HOST PORT USER PASSWORD MODE LOCALDIR [ABORT_PATH ABORT_SHA256]

MODE chooses the data-connection method:
  pasv  passive as ftplib does it: PASV over IPv4, EPSV over IPv6
  epsv  EPSV over either family (sent by hand on IPv4, where ftplib would use PASV)
  port  active as ftplib does it: PORT over IPv4, EPRT over IPv6
  eprt  EPRT over either family (sent by hand on IPv4, where ftplib would use PORT)

Unless LOCALDIR is "-", every regular file in it is uploaded into /py and checked by SIZE, NLST,
MLSD and a sha256 of its download, then renamed, deleted (and /py/sub made and removed); /py is
left holding the non-empty files but the last. ABORT_PATH, if given, names a large file already on
the server (sha256 ABORT_SHA256): its download is aborted with ABOR, after which the control
connection must still work and the file download whole.

Called by crates/ferry/tests/interop.rs; run by hand against any server for debugging.
Active-mode listeners bind the control connection's local address (loopback in the tests),
never the wildcard address ftplib would use.
"""

import ftplib
import hashlib
import io
import os
import socket
import sys


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class RecordingFTP(ftplib.FTP):
    """An FTP client that records the verbs it sends and can force EPSV/EPRT on IPv4."""

    def __init__(self, mode):
        super().__init__(timeout=30)
        self.mode = mode
        self.verbs = []

    def putcmd(self, line):
        self.verbs.append(line.split(" ", 1)[0].upper())
        super().putcmd(line)

    def makepasv(self):
        if self.mode == "epsv":
            return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
        return super().makepasv()

    def makeport(self):
        # As ftplib.FTP.makeport, but bound to the control connection's local address.
        host = self.sock.getsockname()[0]
        sock = socket.create_server((host, 0), family=self.af, backlog=1)
        port = sock.getsockname()[1]
        if self.af == socket.AF_INET and self.mode != "eprt":
            self.sendport(host, port)
        else:
            self.sendeprt(host, port)
        sock.settimeout(self.timeout)
        return sock


def expected_verbs(mode, af):
    v4 = af == socket.AF_INET
    expect = {
        "pasv": "PASV" if v4 else "EPSV",
        "epsv": "EPSV",
        "port": "PORT" if v4 else "EPRT",
        "eprt": "EPRT",
    }[mode]
    return expect, {"PASV", "EPSV", "PORT", "EPRT"} - {expect}


def download(ftp, path):
    buf = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", buf.write)
    return buf.getvalue()


def main():
    host, port, user, password, mode, localdir = sys.argv[1:7]
    abort = sys.argv[7:9]
    check(mode in ("pasv", "epsv", "port", "eprt"), f"unknown mode {mode}")

    ftp = RecordingFTP(mode)
    ftp.connect(host, int(port))
    ftp.login(user, password)
    ftp.set_pasv(mode in ("pasv", "epsv"))
    check(ftp.pwd() == "/", f"PWD after login: {ftp.pwd()!r}")
    if localdir != "-":
        file_checks(ftp, localdir)
    if abort:
        abort_check(ftp, *abort)

    expect, others = expected_verbs(mode, ftp.af)
    used = set(ftp.verbs)
    check(expect in used, f"{expect} never sent; verbs: {sorted(used)}")
    check(not (used & others), f"unexpected data verbs {sorted(used & others)}")

    ftp.quit()
    print("OK", " ".join(sorted(used)))


def file_checks(ftp, localdir):
    ftp.mkd("py")
    ftp.mkd("py/sub")
    ftp.cwd("py")
    check(ftp.pwd() == "/py", f"PWD after CWD py: {ftp.pwd()!r}")

    names = sorted(n for n in os.listdir(localdir) if os.path.isfile(os.path.join(localdir, n)))
    local = {}
    for name in names:
        with open(os.path.join(localdir, name), "rb") as f:
            local[name] = f.read()
        with open(os.path.join(localdir, name), "rb") as f:
            ftp.storbinary(f"STOR {name}", f)
        size = ftp.size(name)
        check(size == len(local[name]), f"SIZE {name}: {size}, expected {len(local[name])}")
        got = download(ftp, name)
        check(sha256(got) == sha256(local[name]),
              f"RETR {name}: {len(got)} bytes, sha256 differs from the {len(local[name])} uploaded")

    listed = ftp.nlst()
    check(sorted(listed) == sorted(names + ["sub"]), f"NLST: {listed!r}, expected {names + ['sub']!r}")

    facts = {n: f for n, f in ftp.mlsd() if f.get("type") not in ("cdir", "pdir")}
    check(set(facts) == set(names) | {"sub"}, f"MLSD names: {sorted(facts)!r}")
    check(facts["sub"].get("type") == "dir", f"MLSD sub: {facts['sub']!r}")
    for name in names:
        f = facts[name]
        check(f.get("type") == "file", f"MLSD {name}: {f!r}")
        check(f.get("size") == str(len(local[name])), f"MLSD {name} size: {f!r}")

    # Rename into a subdirectory, then delete it and the directory.
    moved = names[-1]
    ftp.rename(moved, f"sub/{moved}")
    check(moved not in ftp.nlst(), f"{moved} still listed after RNFR/RNTO")
    check(sha256(download(ftp, f"sub/{moved}")) == sha256(local[moved]), "content changed by rename")
    ftp.delete(f"sub/{moved}")
    check(ftp.nlst("sub") == [], f"NLST sub after DELE: {ftp.nlst('sub')!r}")
    ftp.rmd("sub")
    check("sub" not in ftp.nlst(), "sub still listed after RMD")
    for name in names[:-1]:
        if not local[name]:
            ftp.delete(name)


def abort_check(ftp, abort_path, abort_sha):
    """ABOR in the middle of a large download leaves the control connection usable."""
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"RETR {abort_path}")
    first = conn.recv(65536)
    check(len(first) > 0, "no data before ABOR")
    ftp.sock.settimeout(10)
    try:
        r1 = ftp.abort()  # sent as TCP urgent data; ftplib accepts 426, 225 or 226 here
        conn.close()
        # One reply closes the RETR (426 aborted, or 226 if it had finished), one answers ABOR.
        r2 = ftp.getmultiline()
    except TimeoutError:
        raise Failure("no reply within 10 s to ABOR sent by ftplib.FTP.abort() "
                      "(b'ABOR\\r\\n' with MSG_OOB) during a RETR")
    ftp.sock.settimeout(ftp.timeout)
    check(r1[:3] in ("426", "226") and r2[:3] in ("225", "226"),
          f"replies after ABOR: {r1!r} then {r2!r}; expected 426 (or 226) then 225/226")
    check(ftp.voidcmd("NOOP")[:3] == "200", "NOOP after ABOR")
    got = download(ftp, abort_path)
    check(sha256(got) == abort_sha, f"RETR {abort_path} after ABOR: {len(got)} bytes, sha256 differs")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except ftplib.all_errors as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

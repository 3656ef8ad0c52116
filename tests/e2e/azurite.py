"""Azurite, Microsoft's Azure Storage emulator (npm `azurite`), Blob service only, for the Azure tests.

    a = Azurite.start(basedir)      # a fresh in-memory Azurite on a free loopback port
    a.connection_string             # the development account's connection string for it
    a.stop()                        # idempotent; also kills what the node process left behind

Azurite is installed by scripts/install-deps.sh into the git-ignored npm prefix build/npm
($AZURITE_BLOB overrides the binary). It runs in its own session (process group), so stop()
ends exactly it and its children. Its output and debug log (which shows Azurite's own string
to sign for every request: the fastest way to find a signing bug) stay in basedir;
log_tail() gives their end for failure messages.
"""

import base64
import hashlib
import hmac
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NPM_PREFIX = REPO / "build" / "npm"

# Azurite's well-known development account (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
API_VERSION = "2024-05-04"

_LISTENING = re.compile(rb"successfully listens on https?://[^:/\s]+:(\d+)")


def probe_bin():
    """tests/azure/blob-probe, the C client the Azure tests drive Azurite with."""
    return os.environ.get("BLOB_PROBE", str(REPO / "build" / "blob-probe"))


def azurite_bin():
    return os.environ.get("AZURITE_BLOB", str(NPM_PREFIX / "node_modules" / ".bin" / "azurite-blob"))


class AzuriteError(Exception):
    pass


class Azurite:
    def __init__(self, basedir):
        self.basedir = Path(basedir)
        self.out_path = self.basedir / "azurite.out"
        self.debug_path = self.basedir / "azurite-debug.log"
        self.proc = None
        self.port = None

    @classmethod
    def start(cls, basedir, timeout=30):
        a = cls(basedir)
        try:
            a._start(timeout)
        except BaseException:
            a.stop()
            raise
        return a

    def _start(self, timeout):
        binary = azurite_bin()
        if not os.access(binary, os.X_OK):
            raise AzuriteError("Azurite is not installed at %s (run scripts/install-deps.sh, or "
                               "set AZURITE_BLOB)" % binary)
        self.basedir.mkdir(parents=True, exist_ok=True)
        with open(self.out_path, "wb") as out:
            # Port 0: the kernel picks a free port and Azurite prints it, so there is no
            # race with another process taking a port we probed.
            self.proc = subprocess.Popen(
                [binary, "--disableTelemetry", "--inMemoryPersistence",
                 "--blobHost", "127.0.0.1", "--blobPort", "0", "--debug", str(self.debug_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.basedir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.port is None:
            m = _LISTENING.search(self.out_path.read_bytes())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                raise AzuriteError("Azurite exited with %s:\n%s" % (self.proc.returncode,
                                                                    self.log_tail()))
            elif time.monotonic() > deadline:
                raise AzuriteError("Azurite did not start within %d s:\n%s" % (timeout,
                                                                              self.log_tail()))
            else:
                time.sleep(0.05)
        self._wait_ready(deadline)

    def _wait_ready(self, deadline):
        """Ready when an unauthenticated request gets Azurite's own answer (400 or 403)."""
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/" % self.port, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AzuriteError("Azurite does not answer on port %d:\n%s" % (
                        self.port, self.log_tail()))
                time.sleep(0.05)

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d/%s" % (self.port, DEV_ACCOUNT)

    @property
    def connection_string(self):
        return self.connection_string_with_key(DEV_KEY)

    def connection_string_with_key(self, key):
        return ("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;"
                % (DEV_ACCOUNT, key, self.endpoint))

    def sas_connection_string(self, sas):
        return "BlobEndpoint=%s;SharedAccessSignature=%s" % (self.endpoint, sas)

    def log_tail(self, lines=40):
        text = []
        for path in (self.out_path, self.debug_path):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            text.append("--- %s (last %d lines)\n%s" % (path.name, len(tail), "\n".join(tail)))
        return "\n".join(text)

    def stop(self):
        """Ends Azurite and its whole process group; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader is gone; anything left in its group goes too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def account_sas(account, key_b64, permissions="rwdlac", services="b", resource_types="sco",
                expiry_s=3600, version=API_VERSION):
    """An account SAS token (no leading '?'), signed as Microsoft's "Create an account SAS"
    page describes for versions 2020-12-06 and later (with the empty encryption scope)."""
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expiry_s))
    protocol = "https,http"
    to_sign = "\n".join([account, permissions, services, resource_types, "", expiry, "",
                         protocol, version, "", ""])
    sig = base64.b64encode(hmac.new(base64.b64decode(key_b64), to_sign.encode(),
                                    hashlib.sha256).digest()).decode()
    return urllib.parse.urlencode([("sv", version), ("ss", services), ("srt", resource_types),
                                   ("sp", permissions), ("se", expiry), ("spr", protocol),
                                   ("sig", sig)])

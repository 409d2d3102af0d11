#!/usr/bin/env python3
"""Edit-to-diagnostics latency of `provflow lsp` on a large bundle.

Starts `provflow lsp` with BUNDLE as its workspace, opens one file, then makes one-character
edits to it, alternately breaking and mending a name so that every edit changes that file's
diagnostics. MODE=process (the default) edits a task name in a process's `depends_on`
(`[Create User]` -> `[Create Usex]`); MODE=queries edits a query's key in the file's query set
(`CREATE_USER:` -> `CREATE_USEX:`), which the process's adapter then no longer finds. The latency of an
edit is the time from sending `didChange` to receiving the `publishDiagnostics` for the file
that reflects it. Prints one JSON object: the edit count and p50/p90/p99/max in milliseconds.

    latency.py PROVFLOW BUNDLE [EDITS]
"""

import json
import os
import subprocess
import sys
import time
import urllib.parse


def uri(path):
    return "file://" + urllib.parse.quote(os.path.abspath(path))


class Server:
    def __init__(self, binary, root):
        self.p = subprocess.Popen([os.path.abspath(binary), "lsp"], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.next_id = 0

    def send(self, message):
        body = json.dumps(message).encode()
        self.p.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.p.stdin.flush()

    def read(self):
        length = None
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit("provflow lsp closed its output")
            line = line.strip()
            if not line:
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self.p.stdout.read(length))

    def request(self, method, params):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            m = self.read()
            if m.get("id") == self.next_id and "method" not in m:
                return m

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def diagnostics_for(self, file_uri, want_errors):
        while True:
            m = self.read()
            if m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == file_uri:
                if bool(m["params"]["diagnostics"]) == want_errors:
                    return


def main():
    binary, root = sys.argv[1], os.path.abspath(sys.argv[2])
    edits = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    target = None
    for folder, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            if name.endswith(".yaml") and "[Create User]" in open(path, encoding="utf-8").read():
                target = path
                break
        if target:
            break
    if not target:
        raise SystemExit("no file with `depends_on: [Create User]` in the bundle")
    text = open(target, encoding="utf-8").read()
    if os.environ.get("MODE", "process") == "queries":
        broken = text.replace("  CREATE_USER:", "  CREATE_USEX:", 1)
    else:
        broken = text.replace("[Create User]", "[Create Usex]", 1)
    if broken == text:
        raise SystemExit("the edit does not apply to " + target)
    s = Server(binary, root)
    started = time.monotonic()
    s.request("initialize", {"processId": None, "rootUri": uri(root), "capabilities": {},
                             "workspaceFolders": [{"uri": uri(root), "name": "bench"}]})
    s.notify("initialized", {})
    file_uri = uri(target)
    s.notify("textDocument/didOpen", {"textDocument": {"uri": file_uri, "languageId": "yaml", "version": 1, "text": text}})
    # The first compile (every file read): wait for it with a first edit.
    version = 2
    s.notify("textDocument/didChange", {"textDocument": {"uri": file_uri, "version": version}, "contentChanges": [{"text": broken}]})
    s.diagnostics_for(file_uri, True)
    first = (time.monotonic() - started) * 1000
    samples = []
    for i in range(edits):
        version += 1
        new, errors = (text, False) if i % 2 == 0 else (broken, True)
        t0 = time.monotonic()
        s.notify("textDocument/didChange", {"textDocument": {"uri": file_uri, "version": version}, "contentChanges": [{"text": new}]})
        s.diagnostics_for(file_uri, errors)
        samples.append((time.monotonic() - t0) * 1000)
    s.request("shutdown", None)
    s.notify("exit", None)
    s.p.wait(timeout=30)
    samples.sort()

    def pct(q):
        return round(samples[min(len(samples) - 1, int(q * len(samples)))], 1)

    print(json.dumps({"mode": os.environ.get("MODE", "process"), "file": os.path.relpath(target, root), "edits": len(samples), "first_compile_ms": round(first, 1),
                      "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "max_ms": round(samples[-1], 1)}))


if __name__ == "__main__":
    main()

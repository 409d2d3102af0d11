#!/usr/bin/env python3
"""Parses exported .eml files with Python's `email` package under `email.policy.strict`.

Usage: python3 tests/eml_check.py FILE...

Prints one JSON array with, for each file, what the parser read: the decoded subject, the
From and To mailboxes, the date as Unix seconds, the Message-ID, every part's content type,
charset, transfer encoding and decoded content, and every defect the parser noted on the
message, on any part or on any header. Exits 1 when a file does not parse under the strict
policy (which raises on the first message defect) or when any defect was noted, so that a
caller that only checks the exit status still fails. The Rust tests call this as a second,
independent parser beside `mail-parser`.
"""

import email
import email.policy
import json
import sys


def mailboxes(header):
    if header is None:
        return []
    return [{"name": a.display_name, "address": a.addr_spec} for a in header.addresses]


def check(path):
    with open(path, "rb") as f:
        raw = f.read()
    message = email.message_from_bytes(raw, policy=email.policy.strict)
    defects = []
    parts = []
    for part in message.walk():
        defects += [f"{part.get_content_type()}: {d!r}" for d in part.defects]
        for name, value in part.items():
            defects += [f"{name}: {d!r}" for d in getattr(value, "defects", ())]
        entry = {
            "type": part.get_content_type(),
            "charset": part.get_param("charset"),
            "transfer_encoding": part.get("Content-Transfer-Encoding"),
        }
        if not part.is_multipart():
            entry["content"] = part.get_content()
        parts.append(entry)
    date = message["date"]
    return {
        "file": str(path),
        "subject": str(message["subject"]) if message["subject"] is not None else None,
        "from": mailboxes(message["from"]),
        "to": mailboxes(message["to"]),
        "date": int(date.datetime.timestamp()) if date is not None and date.datetime is not None else None,
        "message_id": str(message["message-id"]) if message["message-id"] is not None else None,
        "template": str(message["x-provflow-template"]) if message["x-provflow-template"] is not None else None,
        "parts": parts,
        "defects": defects,
    }


def main(paths):
    results = []
    failed = False
    for path in paths:
        try:
            result = check(path)
        except Exception as e:  # the strict policy raises on a message defect
            result = {"file": str(path), "error": f"{type(e).__name__}: {e}"}
        failed = failed or "error" in result or bool(result.get("defects"))
        results.append(result)
    json.dump(results, sys.stdout, ensure_ascii=True, indent=1)
    sys.stdout.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

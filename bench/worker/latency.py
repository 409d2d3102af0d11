#!/usr/bin/env python3
"""Latencies of bench/worker from the JSON logs of `provflow worker --log-format json`.

    latency.py LOG...   (one log per worker process)

Prints one JSON line with, in milliseconds (see README.md, "What is measured"):

- claim_p50/claim_p99: from each `claimed` event to the first `task_moved` event the same
  worker logs after it (the first committed outcome of that claim). Only for workers with
  one slot (`--concurrency 1`): with several slots the events of the slots interleave and a
  `task_moved` line does not say which claim it belongs to; then null.
- next_p50/next_p99: per account, from the `task_moved` that completes its first task
  (Create User; the same commit inserts Profile Updated, Pending) to the `task_moved` that
  completes its second task (Profile Updated): how long the dependent task waited and ran.
"""
import json
import math
import sys
from datetime import datetime


def ms(ts):
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000.0


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    i = min(len(values), max(1, math.ceil(p * len(values)))) - 1  # nearest rank
    return round(values[i], 2)


def main(paths):
    claim, done = [], {}
    single_slot = True
    errors = 0
    for path in paths:
        pending_claim = None
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                ev = e.get("event")
                if e.get("level") == "error" or ev in ("commit_fenced_off", "task_held", "claim_lost"):
                    errors += 1
                if ev == "worker_started" and e.get("concurrency", 1) != 1:
                    single_slot = False
                if ev == "claimed":
                    pending_claim = ms(e["ts"])
                elif ev == "task_moved":
                    t = ms(e["ts"])
                    if pending_claim is not None:
                        claim.append(t - pending_claim)
                        pending_claim = None
                    if e.get("status") == "Completed":
                        done.setdefault(e["account"], []).append((e["task"], t))
    nxt = []
    for events in done.values():
        if len(events) == 2:
            events.sort()
            nxt.append(events[1][1] - events[0][1])
    out = {
        "claim_p50": pct(claim, 0.50) if single_slot else None,
        "claim_p99": pct(claim, 0.99) if single_slot else None,
        "claims": len(claim),
        "next_p50": pct(nxt, 0.50),
        "next_p99": pct(nxt, 0.99),
        "accounts": len(nxt),
        "problems": errors,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])

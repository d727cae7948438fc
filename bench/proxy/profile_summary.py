#!/usr/bin/env python3
"""Summarises a bench/proxy/profile.sh results directory as Markdown tables.

usage: profile_summary.py RESULTS_DIR
Reads RESULTS_DIR/meta.txt (targets, shapes, tools, min_rate) and the raw outputs:
  heaptrack-<target>-<shape>-{short,long}.txt   heaptrack_print of the two heaptrack runs, with
  wrk-heaptrack-<target>-<shape>-<leg>-{warmup,load}.txt   the requests each run served;
  callgrind-<target>-<shape>.out                callgrind output ("totals:" = Ir while on), with
  wrk-callgrind-<target>-<shape>-load.txt       the requests served while instrumented;
  strace-<target>-<shape>.txt                   strace -c table, with
  wrk-strace-<target>-<shape>-load.txt          the requests served while traced.
A figure whose files are missing is shown as "-".
"""

import re
import sys
from pathlib import Path

from summarize import _fields  # the "key: value" lines of meta.txt

_LABEL = {"bulwark": "bulwark", "haproxy": "HAProxy", "nginx": "nginx"}


def wrk_requests(path):
    match = re.search(r"^\s*(\d+) requests in", Path(path).read_text(), re.M)
    if not match:
        raise ValueError("no request count in %s" % path)
    return int(match.group(1))


def heaptrack_allocs(path):
    match = re.search(r"^calls to allocation functions: (\d+)", Path(path).read_text(), re.M)
    if not match:
        raise ValueError("no allocation count in %s" % path)
    return int(match.group(1))


def allocations(results, target, shape):
    """(allocations per request, requests in the difference) or None."""
    runs = {}
    for leg in ("short", "long"):
        base = "%s-%s-%s" % (target, shape, leg)
        heap = results / ("heaptrack-%s.txt" % base)
        if not heap.exists():
            return None
        served = sum(wrk_requests(results / ("wrk-heaptrack-%s-%s.txt" % (base, phase)))
                     for phase in ("warmup", "load"))
        runs[leg] = (heaptrack_allocs(heap), served)
    requests = runs["long"][1] - runs["short"][1]
    if requests <= 0:
        return ("n/a (long run served fewer requests)", requests)
    return ((runs["long"][0] - runs["short"][0]) / requests, requests)


def instructions(results, target, shape):
    """(Ir per request, requests) or None."""
    out = results / ("callgrind-%s-%s.out" % (target, shape))
    if not out.exists():
        return None
    totals = re.findall(r"^(?:totals|summary):\s*(\d+)", out.read_text(), re.M)
    total = max(int(t) for t in totals) if totals else 0
    requests = wrk_requests(results / ("wrk-callgrind-%s-%s-load.txt" % (target, shape)))
    return (total / requests, requests)


def syscalls(results, target, shape):
    """({syscall: calls per request}, total per request, requests) or None."""
    out = results / ("strace-%s-%s.txt" % (target, shape))
    if not out.exists():
        return None
    requests = wrk_requests(results / ("wrk-strace-%s-%s-load.txt" % (target, shape)))
    counts = {}
    total = 0
    for line in out.read_text().splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(fields) < 5 or not re.fullmatch(r"[0-9.]+", fields[0]):
            continue
        if fields[-1] == "total":
            total = int(fields[3])
        else:
            counts[fields[-1]] = int(fields[3])
    if not total:
        total = sum(counts.values())
    return ({k: v / requests for k, v in counts.items()}, total / requests, requests)


def _num(value, fmt):
    return fmt % value if isinstance(value, (int, float)) else str(value)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    results = Path(sys.argv[1])
    meta = _fields(results / "meta.txt")
    targets = meta["targets"].split()
    shapes = meta["shapes"].split()
    min_rate = float(meta.get("min_rate", "0.05"))

    print("%s; %s; load avg before %s, after %s" % (
        meta.get("load", ""), meta.get("date_utc", ""), meta.get("load_before", "?"),
        meta.get("load_after", "?")))
    print("host: %s; nginx %s, HAProxy %s%s" % (
        meta.get("host", "?"), meta.get("nginx", "?"), meta.get("haproxy", "?"),
        "; " + meta["bulwark"].split(" (")[0] if "bulwark" in meta else ""))
    print()
    print("| target | request | allocations / request | instructions / request | "
          "syscalls / request |")
    print("|---|---|---|---|---|")
    rows = {}
    for target in targets:
        for shape in shapes:
            a = allocations(results, target, shape)
            i = instructions(results, target, shape)
            s = syscalls(results, target, shape)
            rows[(target, shape)] = s
            print("| %s | %s | %s | %s | %s |" % (
                _LABEL.get(target, target), shape,
                "-" if a is None else "%s (n=%d)" % (_num(a[0], "%.2f"), a[1]),
                "-" if i is None else "%.0f (n=%d)" % i,
                "-" if s is None else "%.2f (n=%d)" % (s[1], s[2])))
    print()
    print("System calls per request (those at >= %g per request):" % min_rate)
    print()
    print("| target | request | per request |")
    print("|---|---|---|")
    for (target, shape), s in rows.items():
        if s is None:
            continue
        listed = sorted(((v, k) for k, v in s[0].items() if v >= min_rate), reverse=True)
        print("| %s | %s | %s |" % (_LABEL.get(target, target), shape,
                                    ", ".join("%s %.2f" % (k, v) for v, k in listed)))
    print()
    print("n = requests the figure is divided by (for allocations: the difference between the "
          "long and the short heaptrack run).")


if __name__ == "__main__":
    main()

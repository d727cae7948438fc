#!/usr/bin/env python3
"""Summarises a bench/proxy/run.sh results directory as a Markdown table.

usage: summarize.py RESULTS_DIR
Reads RESULTS_DIR/meta.txt (rounds, targets, connection counts and request shapes of the run),
and for each scenario <shape>-c<connections>: wrk-<scenario>-<target>-r<round>.txt (wrk --latency
output) and run-<scenario>-<target>-r<round>.txt (load average, user and system CPU ticks of the
measured process). One table per scenario. With several rounds each number is the median over
the rounds (each metric on its own); CPU per request (user and system apart) is the total CPU
time over the total requests of all rounds.
"""

import re
import statistics
import sys
from pathlib import Path

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_LABEL = {"upstream": "upstream direct (no proxy)", "bulwark": "bulwark", "haproxy": "HAProxy",
          "nginx": "nginx", "baseline": "bulwark, baseline binary"}


def _ms(text):
    """'812.00us' / '1.23ms' / '1.02s' -> milliseconds."""
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError("unknown latency %r" % text)
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def _fields(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def parse_wrk(text):
    """The numbers of one `wrk --latency` run."""
    result = {"non2xx": 0, "socket_errors": 0}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        elif re.match(r"^(50|99)(\.0+)?%\s", line):
            pct, value = line.split()[:2]
            result["p" + pct.rstrip("%").split(".")[0]] = _ms(value)
        elif re.match(r"^\d+ requests in", line):
            result["requests"] = int(line.split()[0])
        elif line.startswith("Non-2xx or 3xx responses:"):
            result["non2xx"] = int(line.split(":")[1])
        elif line.startswith("Socket errors:"):
            result["socket_errors"] = sum(int(n) for n in re.findall(r"\d+", line))
    for key in ("rps", "p50", "p99", "requests"):
        if key not in result:
            raise ValueError("wrk output has no %s" % key)
    return result


def load_target(results, rounds, scenario, target, clk_tck):
    """The median round of `target` in `scenario`, with its CPU time per request (user and
    system apart) and the load averages."""
    runs = []
    user = system = 0
    loads = []
    for r in range(1, rounds + 1):
        name = "%s-%s-r%d.txt" % (scenario, target, r)
        runs.append(parse_wrk((results / ("wrk-" + name)).read_text()))
        run = _fields(results / ("run-" + name))
        user += int(run.get("cpu_user_ticks", "0"))
        system += int(run.get("cpu_sys_ticks", "0"))
        loads.append(run.get("load_before", "?").split()[0])
    requests = sum(run["requests"] for run in runs)
    row = {key: statistics.median(run[key] for run in runs) for key in ("rps", "p50", "p99")}
    row["rps_min"] = min(run["rps"] for run in runs)
    row["rps_max"] = max(run["rps"] for run in runs)
    row["errors"] = sum(run["non2xx"] + run["socket_errors"] for run in runs)
    per_request = 1e6 / clk_tck / requests if requests else 0.0
    row["user_us"] = user * per_request
    row["sys_us"] = system * per_request
    row["cpu_us"] = row["user_us"] + row["sys_us"]
    row["load"] = ", ".join(loads)
    return row


def print_scenario(results, meta, rounds, scenario, targets, clk_tck):
    rows = {t: load_target(results, rounds, scenario, t, clk_tck) for t in targets}
    shape, _, connections = scenario.rpartition("-c")
    print("### %s request, %s connections" % (shape, connections))
    print()
    spread = rounds > 1
    print("| target | requests/s%s | p50 | p99 | errors | user CPU per request | "
          "system CPU per request | CPU per request | load avg before |" % (
              " (median; min–max)" if spread else ""))
    print("|---|---|---|---|---|---|---|---|---|")
    for target in targets:
        r = rows[target]
        rps = "%.0f" % r["rps"]
        if spread:
            rps += " (%.0f–%.0f)" % (r["rps_min"], r["rps_max"])
        print("| %s | %s | %.2f ms | %.2f ms | %d | %.1f µs | %.1f µs | %.1f µs | %s |" % (
            _LABEL.get(target, target), rps, r["p50"], r["p99"], r["errors"], r["user_us"],
            r["sys_us"], r["cpu_us"], r["load"]))
    if "bulwark" in rows:
        print()
        print("| ratio | requests/s | p50 | p99 | user CPU per request | system CPU per request |")
        print("|---|---|---|---|---|---|")
        b = rows["bulwark"]
        for other in ("haproxy", "nginx", "baseline"):
            if other not in rows:
                continue
            o = rows[other]
            print("| bulwark / %s | %.2f× | %.2f× | %.2f× | %s | %s |" % (
                _LABEL[other], b["rps"] / o["rps"], b["p50"] / o["p50"], b["p99"] / o["p99"],
                _ratio(b["user_us"], o["user_us"]), _ratio(b["sys_us"], o["sys_us"])))
    print()
    return any(rows[t]["errors"] for t in targets)


def _ratio(a, b):
    return "%.2f×" % (a / b) if b else "n/a"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    results = Path(sys.argv[1])
    meta = _fields(results / "meta.txt")
    clk_tck = int(meta.get("clk_tck", "100"))
    rounds = int(meta["rounds"])
    targets = meta["targets"].split()

    print("%s; %s" % (meta.get("load", ""), meta.get("date_utc", "")))
    print("host: %s; nginx %s, HAProxy %s, %s%s" % (
        meta.get("host", "?"), meta.get("nginx", "?"), meta.get("haproxy", "?"),
        meta.get("wrk", "?"),
        "; " + meta["bulwark"].split(" (")[0] if "bulwark" in meta else ""))
    print()
    errors = False
    for connections in meta["connections"].split():
        for shape in meta["shapes"].split():
            errors |= print_scenario(results, meta, rounds, "%s-c%s" % (shape, connections),
                                     targets, clk_tck)
    if errors:
        print("WARNING: some runs had non-2xx answers or socket errors (see errors column).")


if __name__ == "__main__":
    main()

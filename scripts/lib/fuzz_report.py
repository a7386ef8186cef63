#!/usr/bin/env python3
"""scripts/fuzz's table and bench/results/fuzz.json: one row per target run, read from
libFuzzer's log. Usage: fuzz_report.py ROOT TARGET|SECONDS|LOG|CRASH_INPUT ...
(SECONDS empty: libFuzzer's own "Done N runs in S second(s)"; CRASH_INPUT empty: none)."""
import datetime
import json
import os
import re
import socket
import sys


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    try:
        load = f", load {open('/proc/loadavg').read().split()[0]}"
    except OSError:
        pass
    return f"{socket.gethostname()} ({cpu}, {os.cpu_count()} CPUs{load})"


def main():
    root, rows = sys.argv[1], sys.argv[2:]
    path = os.path.join(root, "bench/results/fuzz.json")
    try:
        doc = json.load(open(path))
    except (OSError, ValueError):
        doc = {}
    doc["about"] = ("scripts/fuzz: libFuzzer + AddressSanitizer over each guest- or client-facing parser "
                    "(Fuzz/<Target>). Per target: the latest run's executions, seconds, exec/s, coverage "
                    "(libFuzzer's cov: edges of our instrumented modules) and features; total_executions sums "
                    "every recorded run; crashes_found lists every crashing input kept, with its fix.")
    targets = doc.setdefault("targets", {})
    print(f"{'target':<16} {'executions':>11} {'exec/s':>8} {'coverage':>9} {'features':>9} {'corpus':>7} "
          f"{'seconds':>8}  crashes")
    for row in rows:
        target, seconds, log, artifact = row.split("|", 3)
        text = open(log, errors="replace").read()
        units = re.findall(r"stat::number_of_executed_units:\s+(\d+)", text)
        done = re.findall(r"Done (\d+) runs in (\d+) second", text)
        progress = re.findall(r"^#(\d+)\s", text, re.M)
        execs = int(units[-1]) if units else int(done[-1][0]) if done else int(progress[-1]) if progress else 0
        secs = float(seconds) if seconds else float(done[-1][1]) if done else 0.0
        cov = [int(x) for x in re.findall(r"\bcov: (\d+)", text)]
        ft = [int(x) for x in re.findall(r"\bft: (\d+)", text)]
        corp = re.findall(r"\bcorp: (\d+)/", text)
        entry = targets.get(target, {})
        found = entry.get("crashes_found", [])
        if artifact:
            found.append({"input": artifact, "date": datetime.date.today().isoformat(), "fixed": None})
        entry.update({
            "executions": execs, "seconds": round(secs, 1), "exec_per_second": round(execs / secs) if secs else 0,
            "total_executions": entry.get("total_executions", 0) + execs,
            "coverage_edges": max(cov) if cov else None, "features": max(ft) if ft else None,
            "corpus_inputs": int(corp[-1]) if corp else None, "crashes": 1 if artifact else 0,
            "crashes_found": found,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
        })
        targets[target] = entry
        print(f"{target:<16} {execs:>11} {entry['exec_per_second']:>8} {entry['coverage_edges'] or '-':>9} "
              f"{entry['features'] or '-':>9} {entry['corpus_inputs'] or '-':>7} {secs:>8.1f}  {1 if artifact else 0}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()

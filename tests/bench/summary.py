#!/usr/bin/env python3
"""tests/bench/summary.py LOG [SCALE [FAILED]] - the summary of a `make bench` run.

Reads every "bench <name>: <value> <unit...>" line the benchmarks printed (LOG is their combined
output), and writes
  bench/results/<YYYY-MM-DD>-<host>.json  every line plus the scenario table (machine-readable)
  bench/results/latest.md                 a short markdown table: each scenario next to its floor
                                          measured in the same run, as a ratio
Scenarios whose lines are missing are listed as not measured (e.g. a benchmark another component
adds later, such as telemetry ingest). FAILED lists the benchmarks that exited non-zero; BENCH_GIT
overrides the revision recorded (for runs from an exported tree without .git)."""
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys

LINE = re.compile(r"^bench ([A-Za-z0-9_.-]+): (.*)$")
NUM = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def first_num(text):
    m = NUM.search(text or "")
    return float(m.group(0)) if m else None


def unit_of(text):
    m = NUM.search(text or "")
    if not m:
        return ""
    rest = text[m.end():].strip()
    return rest.split(" (")[0]


def main():
    log, scale = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "1")
    failed = (sys.argv[3] if len(sys.argv) > 3 else "").split()
    lines = {}
    with open(log, errors="replace") as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if m:
                lines[m.group(1)] = m.group(2)

    def scen(title, name, floor, floor_desc, value=None, unit=None, floor_value=None,
             floor_unit=None, note=""):
        v = value if value is not None else first_num(lines.get(name))
        fv = floor_value if floor_value is not None else first_num(lines.get(floor))
        row = {"scenario": title, "value": v, "unit": unit or unit_of(lines.get(name, "")),
               "detail": lines.get(name, ""), "floor": floor_desc, "floor_value": fv,
               "floor_unit": floor_unit or unit_of(lines.get(floor, "")), "note": note}
        row["ratio_pct"] = round(100.0 * v / fv, 1) if v is not None and fv else None
        if v is None and not note:
            row["note"] = "not measured in this run"
        return row

    rows = [
        scen("NoSec registrations", "suite_nosec_register", "suite_nosec_register_floor",
             "same simulator against the stateless floor server"),
        scen("DTLS 1.2 PSK registrations (handshake + Register)", "suite_dtls_register",
             "suite_dtls_register_floor", "raw wolfSSL DTLS 1.2 PSK handshake loop"),
        scen("Registered fleet: steady Updates + Sends", "suite_steady_ops",
             "suite_steady_ops_floor", "same fleet against the floor server"),
    ]
    # Registration interface on one shard (tests/bench/registration.c): requests per CPU-second of
    # the shard thread next to a trivial UDP echo server's, measured just before each phase.
    # each level's Updates go to the devices its Registers just added (100 k more registered)
    pops = {"register": {"0": "0", "100k": "100 k", "max": "1 M"},
            "update": {"0": "100 k", "100k": "200 k", "max": "1.1 M"}}
    for kind, what in (("register", "Registers"), ("update", "Updates")):
        for lv, pop in pops[kind].items():
            row = scen("%s on one shard, %s registered (per CPU-second)" % (what, pop),
                       "registration_%s_%s" % (kind, lv), "registration_%s_%s_floor" % (kind, lv),
                       "UDP echo server (recvmmsg/sendmmsg), slices interleaved with the daemon's")
            # the benchmark's own ratio: the median of its interleaved slices' ratios
            m = re.search(r"\(([0-9.]+)% of the echo floor", row["detail"])
            if m:
                row["ratio_pct"] = float(m.group(1))
            rows.append(row)
    # Write-behind: store_bench.sh's changes persisted per second by the store's own pipeline.
    for kind in ("insert", "update"):
        rows.append(scen("Registration changes persisted (write-behind, %ss)" % kind,
                         "store_persisted_" + kind, "store_pg_copy",
                         "PostgreSQL COPY into the same table shape"))
    # Restart: suite.sh (restore of the steady scenario's registrations next to PostgreSQL
    # reading them) and store_bench.sh (restore of STORE_ROWS rows next to a COPY into the same
    # table shape) both print "N registrations in X ms (...)".
    def restore_rate(name):
        m = re.match(r"([0-9]+) registrations in ([0-9]+) ms", lines.get(name, ""))
        if m and int(m.group(2)) > 0:
            return round(int(m.group(1)) * 1000.0 / int(m.group(2)))
        return None
    rows.append(scen("Restart: registrations restored (suite)", "suite_restart_restore",
                     "suite_restart_restore_floor", "PostgreSQL COPY of the same rows out",
                     value=restore_rate("suite_restart_restore"), unit="registrations/s",
                     floor_unit="rows/s"))
    rows.append(scen("Restart: registrations restored (store_bench)", "store_restore",
                     "store_pg_copy", "PostgreSQL COPY into the same table shape",
                     value=restore_rate("store_restore"), unit="registrations/s",
                     floor_unit="rows/s"))
    tele = sorted(k for k in lines if k.startswith("telemetry_") and not k.endswith("_floor")
                  and not k.endswith("_ratio"))
    if tele:
        k = tele[0]
        rows.append(scen("Send/notification ingest into telemetry", k, k + "_floor",
                         "see the telemetry benchmark"))
    else:
        rows.append({"scenario": "Send/notification ingest into telemetry", "value": None,
                     "unit": "", "detail": "", "floor": "", "floor_value": None,
                     "floor_unit": "", "ratio_pct": None,
                     "note": "not measured in this run (telemetry benchmark not present)"})

    now = datetime.datetime.now(datetime.timezone.utc)
    host = socket.gethostname().split(".")[0] or "host"
    git = os.environ.get("BENCH_GIT", "")
    try:
        git = git or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, check=False).stdout.strip() or "unknown"
    except OSError:
        git = "unknown"
    meta = {"date": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "host": host, "git": git,
            "bench_scale": float(scale), "cpus": os.cpu_count(),
            "kernel": platform.release(), "machine": platform.machine(), "failed": failed}
    try:
        with open("/proc/meminfo") as f:
            meta["mem_total_kb"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    os.makedirs("bench/results", exist_ok=True)
    path = "bench/results/%s-%s.json" % (now.strftime("%Y-%m-%d"), host)
    with open(path, "w") as f:
        json.dump({"meta": meta, "scenarios": rows, "lines": lines}, f, indent=2, sort_keys=True)
        f.write("\n")

    def fmt(v, unit):
        if v is None:
            return "-"
        return ("%.0f" % v if v >= 100 else "%.2f" % v) + (" " + unit if unit else "")

    md = ["# Benchmark results (latest `make bench`)", "",
          "%s, host `%s`, %s CPUs, %s, git `%s`, BENCH_SCALE=%s. Full data: `%s`; "
          "how to read and reproduce: [docs/benchmarks.md](../../docs/benchmarks.md)."
          % (meta["date"], host, meta["cpus"], meta["kernel"], git, scale,
             os.path.basename(path)), ""]
    if failed:
        md += ["**Failed in this run:** %s (their scenarios show as not measured)." %
               ", ".join(failed), ""]
    md += ["| scenario | result | floor (same run) | ratio |", "|---|---|---|---|"]
    for r in rows:
        res = fmt(r["value"], r["unit"]) if r["value"] is not None else r["note"]
        flo = ("%s: %s" % (r["floor"], fmt(r["floor_value"], r["floor_unit"]))
               if r["floor_value"] is not None else (r["floor"] or "-"))
        ratio = "%.1f %%" % r["ratio_pct"] if r["ratio_pct"] is not None else "-"
        md.append("| %s | %s | %s | %s |" % (r["scenario"], res, flo, ratio))
    md += ["", "Details of the scenarios:", ""]
    for r in rows:
        if r["detail"]:
            md.append("- %s: %s" % (r["scenario"], r["detail"]))
    md += ["", "<details><summary>Every benchmark line of this run (%d)</summary>" % len(lines),
           "", "| benchmark | value |", "|---|---|"]
    for k in sorted(lines):
        md.append("| %s | %s |" % (k, lines[k].replace("|", "\\|")))
    md += ["", "</details>", ""]
    with open("bench/results/latest.md", "w") as f:
        f.write("\n".join(md))
    print("bench summary: %s and bench/results/latest.md" % path)


if __name__ == "__main__":
    main()

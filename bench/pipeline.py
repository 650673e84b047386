"""Benchmark (b): the whole metering path, events to durable storage and closed, rated
hours, on SQLite and on PostgreSQL, through `purser ingest` and through HTTP.

Each run starts from an empty database set up as production would be: meters declared
in the configuration, an administrator and a token made with the CLI, then 1,000
accounts, an offer and an entitlement per account created through the API (not
timed). The timed part is:
  - ingest: `purser ingest EVENTS --close` (parse, deduplicate, store, close and rate
    every hour), one process;
  - http:   the events POSTed as NDJSON bodies of about 4 MiB over two connections to
    `purser serve` (periodic jobs off), then `purser ingest - --close` to close and
    rate the hours, so that both paths end at the same state.
Peak memory is the largest resident set of the Purser processes involved.

With --duckdb, each timed run is paired with a DuckDB run just before it (after the
untimed setup, the file warm), and the run's ratio is taken to that DuckDB run: on a
shared machine whose speed moves from one minute to the next, a ratio to a DuckDB
figure taken minutes earlier measures the machine as much as Purser.

    python3 bench/pipeline.py EVENTS.ndjson [--backends sqlite,postgres]
        [--paths ingest,http] [--runs N] [--purser target/release/purser] [--duckdb]

Prints one JSON line per run and a summary of medians.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgres://postgres@127.0.0.1:5432/test")
PG_BENCH = "postgres://postgres@127.0.0.1:5432/purser_bench"
ACCOUNTS = 1000
CHUNK = 4 * 1024 * 1024

METERS = """
[[metering.meters]]
name = "storage.capacity"
event_type = "storage.capacity.sampled"
value_path = "$.bytes_stored"
aggregation = "time_weighted_avg"
unit = "bytes"
group_by = "$.cluster_id"
dimension = "capacity_tib_hours"
conversion = "bytes_to_tib"

[[metering.meters]]
name = "storage.written"
event_type = "storage.io.counted"
value_path = "$.bytes_written"
aggregation = "sum"
unit = "bytes"
dimension = "data_written_gib"
conversion = "bytes_to_gib"

[[metering.meters]]
name = "storage.read"
event_type = "storage.io.counted"
value_path = "$.bytes_read"
aggregation = "sum"
unit = "bytes"
"""


def api(base, token, method, path, body):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


class Purser:
    def __init__(self, binary, backend, workdir):
        self.binary = binary
        self.backend = backend
        self.workdir = workdir
        self.config = os.path.join(workdir, "purser.toml")
        with open(self.config, "w") as f:
            f.write('log_level = "warn"\nmax_body_bytes = 16777216\n')
            f.write("[jobs]\nenabled = false\n")
            # The stream is a past week: accept it whatever today's date.
            f.write("[metering]\nmax_event_age_hours = 1000000\n")
            f.write(METERS)

    def args(self, *rest):
        base = [self.binary, "--config", self.config]
        if self.backend == "sqlite":
            base += ["--data-dir", os.path.join(self.workdir, "data")]
        else:
            base += ["--database-url", PG_BENCH]
        return base + list(rest)

    def run(self, *rest, stdin=None, timed=False):
        command = self.args(*rest)
        if timed:
            command = ["/usr/bin/time", "-f", "%e %M"] + command
        result = subprocess.run(command, input=stdin, capture_output=True, check=True)
        return result

    def serve(self):
        process = subprocess.Popen(
            self.args("serve", "--listen", "127.0.0.1:0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in process.stdout:
            if line.startswith("Purser is listening on "):
                return process, line.split()[-1].strip()
        raise RuntimeError("the server did not start")


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def stop(process):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)


def fresh(binary, backend):
    workdir = tempfile.mkdtemp(prefix=f"purser-bench-{backend}-")
    if backend == "postgres":
        for sql in ["DROP DATABASE IF EXISTS purser_bench", "CREATE DATABASE purser_bench"]:
            subprocess.run(["psql", PG_ADMIN, "-qc", sql], check=True, capture_output=True)
    purser = Purser(binary, backend, workdir)
    purser.run("user", "add", "bench", "--role", "admin", "--residency", "US")
    token = purser.run("token", "create", "bench", "--name", "bench").stdout.decode().strip()
    process, base = purser.serve()
    offer = api(base, token, "POST", "/v1/offers", {
        "name": "Bench private offer", "kind": "private", "marketplace": "direct",
        "dimensions": [
            {"key": "capacity_tib_hours", "unit": "TiB-hour"},
            {"key": "data_written_gib", "unit": "GiB"},
        ],
    })
    for i in range(ACCOUNTS):
        account = api(base, token, "POST", "/v1/accounts", {
            "name": f"Bench account {i:05}", "external_id": f"acct-{i:05}",
            "marketplace": "direct", "region": "us-east-1",
        })
        api(base, token, "POST", f"/v1/accounts/{account['id']}/entitlements", {
            "offer_id": offer["id"], "start": "2026-01-01T00:00:00Z", "end": "2028-01-01T00:00:00Z",
            "status": "active",
            "commitments": {"capacity_tib_hours": {
                "committed_per_period": "60000", "overage_price": "0.0125",
            }},
        })
    stop(process)
    return purser, token, workdir


def chunks(path):
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK)
            if not data:
                return
            rest = f.readline()
            yield data + rest


def run_ingest(purser, events):
    started = time.monotonic()
    result = purser.run("ingest", events, "--close", "--quiet", "--json", timed=True)
    seconds = time.monotonic() - started
    _, rss_kib = result.stderr.decode().strip().splitlines()[-1].split()
    summary = json.loads(result.stdout)
    return seconds, int(rss_kib), summary


def run_http(purser, token, events):
    process, base = purser.serve()
    bodies = chunks(events)
    lock = threading.Lock()
    totals = {"events": 0, "accepted": 0, "duplicate": 0, "rejected": 0}
    failures = []

    def sender():
        while True:
            with lock:
                body = next(bodies, None)
            if body is None:
                return
            request = urllib.request.Request(
                base + "/v1/events", data=body, method="POST",
                headers={"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"},
            )
            try:
                with urllib.request.urlopen(request) as response:
                    report = json.loads(response.read())
            except Exception as error:  # noqa: BLE001 - reported below
                failures.append(str(error))
                return
            with lock:
                for key in totals:
                    totals[key] += report[key]

    started = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ingested = time.monotonic() - started
    server_rss = peak_rss_kib(process.pid)
    stop(process)
    if failures:
        raise RuntimeError(f"HTTP ingest failed: {failures[:3]}")
    close_started = time.monotonic()
    result = purser.run("ingest", "-", "--close", "--quiet", "--json", stdin=b"", timed=True)
    closing = time.monotonic() - close_started
    _, close_rss = result.stderr.decode().strip().splitlines()[-1].split()
    summary = dict(totals)
    summary["hours_closed"] = json.loads(result.stdout)["hours_closed"]
    summary["ingest_seconds"] = round(ingested, 2)
    summary["close_seconds"] = round(closing, 2)
    return ingested + closing, max(server_rss, int(close_rss)), summary


def duckdb_rate(events):
    """DuckDB's events per second on the file, as bench/duckdb_hourly.py times it."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "duckdb_hourly.py")
    with open(events, "rb") as f:
        while f.read(1 << 24):
            pass
    result = subprocess.run([sys.executable, script, events, "2"], capture_output=True, check=True)
    return json.loads(result.stdout.decode().strip().splitlines()[-1])["events_per_second"]


def verify(purser):
    result = subprocess.run(purser.args("verify", "--from", "2026-01-01T00:00:00Z"), capture_output=True)
    return result.returncode == 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("events")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--paths", default="ingest,http")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--purser", default="target/release/purser")
    parser.add_argument("--verify", action="store_true", help="run purser verify after each run (slow)")
    parser.add_argument("--duckdb", action="store_true", help="pair each run with a DuckDB run just before it")
    options = parser.parse_args()
    with open(options.events, "rb") as f:
        n_lines = sum(1 for _ in f)
    results = {}
    for backend in options.backends.split(","):
        for path in options.paths.split(","):
            for run in range(options.runs):
                purser, token, workdir = fresh(options.purser, backend)
                try:
                    duckdb = duckdb_rate(options.events) if options.duckdb else None
                    if path == "ingest":
                        seconds, rss_kib, summary = run_ingest(purser, options.events)
                    else:
                        seconds, rss_kib, summary = run_http(purser, token, options.events)
                    verified = verify(purser) if options.verify else None
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                line = {
                    "backend": backend, "path": path, "run": run + 1, "events": n_lines,
                    "seconds": round(seconds, 2), "events_per_second": round(n_lines / seconds),
                    "peak_rss_mib": round(rss_kib / 1024), "summary": summary, "verified": verified,
                }
                if duckdb:
                    line["duckdb_events_per_second"] = duckdb
                    line["ratio_to_duckdb"] = round(n_lines / seconds / duckdb, 3)
                print(json.dumps(line), flush=True)
                results.setdefault((backend, path), []).append(line)
    for (backend, path), lines in results.items():
        rate = statistics.median(l["events_per_second"] for l in lines)
        rss = statistics.median(l["peak_rss_mib"] for l in lines)
        paired = ""
        if options.duckdb:
            ratio = statistics.median(l["ratio_to_duckdb"] for l in lines)
            paired = f"  {ratio:.2f}x the DuckDB run before each"
        print(f"median {backend:8} {path:6} {rate:>10,.0f} events/s  peak {rss:,.0f} MiB{paired}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

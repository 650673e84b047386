"""The DuckDB baseline for the metering benchmark.

Computes, in memory and from the same NDJSON file the Purser benchmark reads, the
deduplicated hourly aggregates Purser's meters compute:
  - storage.io.counted:       sum of bytes_written and of bytes_read per account x hour;
  - storage.capacity.sampled: time-weighted average of bytes_stored per account x
                              cluster x hour (each sample holds until the next one in
                              the hour, or the hour's end).
Events are deduplicated on (source, id), as CloudEvents defines their identity.

    pip install duckdb
    python3 bench/duckdb_hourly.py EVENTS.ndjson [THREADS]

Prints one JSON line: events, seconds, events_per_second, peak_rss_mib, and the
number of result rows of each aggregate with checksums of their values (a cross-check
for Purser's own figures, `bench-core` prints the same): the totals of bytes_written
and bytes_read over all rows, and the total over all rows of the time-weighted average
rounded down to a whole byte (computed exactly, in integers of byte-microseconds).
"""

import json
import resource
import sys
import time

import duckdb


def main() -> None:
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    con = duckdb.connect()  # in memory
    con.execute(f"SET threads TO {threads}")
    started = time.perf_counter()
    con.execute(
        f"""
        CREATE TEMP TABLE events AS
        SELECT id, source, type, subject, time, data
        FROM read_json('{path}', format = 'newline_delimited',
            columns = {{'specversion': 'VARCHAR', 'id': 'VARCHAR', 'source': 'VARCHAR',
                        'type': 'VARCHAR', 'subject': 'VARCHAR', 'time': 'TIMESTAMPTZ',
                        'datacontenttype': 'VARCHAR', 'data': 'JSON'}})
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE unique_events AS
        SELECT * FROM events
        QUALIFY row_number() OVER (PARTITION BY source, id ORDER BY time) = 1
        """
    )
    io_rows, io_written, io_read = con.execute(
        """
        SELECT count(*), sum(bytes_written), sum(bytes_read) FROM (
            SELECT subject, date_trunc('hour', time) AS hour,
                   sum(CAST(data->>'bytes_written' AS HUGEINT)) AS bytes_written,
                   sum(CAST(data->>'bytes_read' AS HUGEINT)) AS bytes_read
            FROM unique_events WHERE type = 'storage.io.counted'
            GROUP BY ALL)
        """
    ).fetchone()
    capacity_rows, capacity_twa_floor = con.execute(
        """
        WITH samples AS (
            SELECT subject, data->>'cluster_id' AS cluster, time,
                   date_trunc('hour', time) AS hour,
                   CAST(data->>'bytes_stored' AS HUGEINT) AS bytes_stored
            FROM unique_events WHERE type = 'storage.capacity.sampled'),
        held AS (
            SELECT *, coalesce(lead(time) OVER w, hour + INTERVAL 1 HOUR) AS until
            FROM samples
            WINDOW w AS (PARTITION BY subject, cluster, hour ORDER BY time))
        SELECT count(*), sum(twa_floor) FROM (
            SELECT subject, cluster, hour,
                   sum(bytes_stored * (epoch_us(until) - epoch_us(time)))
                       // sum(epoch_us(until) - epoch_us(time)) AS twa_floor
            FROM held GROUP BY ALL)
        """
    ).fetchone()
    seconds = time.perf_counter() - started
    n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    n_unique = con.execute("SELECT count(*) FROM unique_events").fetchone()[0]
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "engine": f"duckdb {duckdb.__version__}",
                "threads": threads,
                "events": n_events,
                "unique_events": n_unique,
                "seconds": round(seconds, 3),
                "events_per_second": round(n_events / seconds),
                "peak_rss_mib": round(peak_rss_mib),
                "io_hour_rows": io_rows,
                "capacity_hour_rows": capacity_rows,
                "io_bytes_written": str(io_written),
                "io_bytes_read": str(io_read),
                "capacity_twa_floor_sum": str(capacity_twa_floor),
            }
        )
    )


if __name__ == "__main__":
    main()

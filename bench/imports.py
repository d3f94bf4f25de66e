"""`python -m bench.imports`: lead import rows/s and peak memory for files of 100,000 and 1,000,000 rows.

Each file is the bundled sample (shared/data/sample_leads.csv: real-world headers, hostile and invalid
rows, duplicates) repeated with every valid email made unique, so the import does all its work on
every row: parse, check, COPY, classify, insert, and the rejects file. Each size is imported in a
fresh process into a fresh client, so its peak RSS is its own. Prints figures with the machine;
nothing is asserted (docs/benchmarks.md records them).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from bench.__main__ import machine, setup_database  # noqa: E402
from shared.settings import PROJECT_ROOT  # noqa: E402

SAMPLE = PROJECT_ROOT / "shared" / "data" / "sample_leads.csv"
TARGET_ROWS_PER_S = 20_000


def write_file(path: Path, rows: int) -> None:
    """`rows` data rows: the sample's rows in order, over and over, each valid email given a unique local part."""
    with SAMPLE.open(encoding="utf-8-sig", newline="") as fh:
        header, *body = list(csv.reader(fh))
    email = next(i for i, name in enumerate(header) if "mail" in name.lower())
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for n in range(rows):
            row = list(body[n % len(body)])
            local, at, domain = row[email].partition("@")
            if at and n >= len(body):  # the first copy is the sample as it is (its duplicates stay duplicates)
                row[email] = f"{local}.{n}@{domain}"
            writer.writerow(row)


def import_once(path: Path, client: str) -> dict:
    """Import `path` for a new client in this process; the report's counts, seconds and peak RSS."""
    from shared import db
    from shared.engines.clients import clients
    from shared.engines.leads.importer import import_csv

    with db.transaction() as conn:
        clients.create_client(conn, client)
    started, cpu = time.perf_counter(), time.process_time()
    report = import_csv(path, client_name=client, rejects_path=path.with_suffix(".rejects.csv"))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rows": report.total_rows, "imported": report.imported, "not_imported": report.total_rows - report.imported,
            "seconds": seconds, "rows_per_s": report.total_rows / seconds, "cpu_seconds": cpu,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measured import, in its own process
    args = parser.parse_args()
    if args.child:
        path, client = args.child.split("|", 1)
        print(json.dumps(import_once(Path(path), client)))
        return
    setup_database()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"leads-{rows}.csv"
            write_file(path, rows)
            load = os.getloadavg()[0]
            child = subprocess.run([sys.executable, "-m", "bench.imports", "--child", f"{path}|bench-import-{rows}"],
                                   check=True, capture_output=True, text=True, env=os.environ.copy())
            r = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"import {r['rows']:,} rows ({path.stat().st_size / 2**20:.0f} MiB, {r['not_imported']:,} not imported): "
                  f"{r['seconds']:.1f} s = {r['rows_per_s']:,.0f} rows/s (target {TARGET_ROWS_PER_S:,}; the importer's own "
                  f"CPU {r['cpu_seconds']:.1f} s, the rest is Postgres and waiting), "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB (load average {load:.2f} before)", flush=True)


if __name__ == "__main__":
    main()

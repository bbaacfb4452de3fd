"""Write a large synthetic interaction file for loading and training benchmarks.

    python benchmarks/make_large.py /tmp/big/20m.csv --rows 20000000 --users 1000000 --items 5000000 --string-ids

Power-law (Zipf) item popularity, lognormal user activity, per-user rising timestamps and 1..5
star ratings (:func:`ssmrec.data.synthetic.large_chunks`), written chunk by chunk: memory stays
at a chunk plus the id tables whatever ``--rows`` is. The format follows the name: ``.parquet``,
else delimited text (``--sep``; gzipped when the name ends in ``.gz``). The same arguments give
the same file.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from ssmrec.data.synthetic import write_large


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="the file to write (.csv, .tsv, .csv.gz or .parquet)")
    p.add_argument("--rows", type=int, default=1_000_000, help="distinct (user, item) rows (default: 1M)")
    p.add_argument("--users", type=int, default=None, help="user id space (default: rows / 20)")
    p.add_argument("--items", type=int, default=None, help="item id space (default: rows / 4)")
    p.add_argument("--item-alpha", type=float, default=1.0, help="Zipf exponent of item popularity (default: 1)")
    p.add_argument("--user-sigma", type=float, default=1.5, help="lognormal sigma of user activity (default: 1.5)")
    p.add_argument("--string-ids", action="store_true", help="string ids (u…/i… base-36) instead of integers")
    p.add_argument("--no-ratings", action="store_true", help="leave out the rating column")
    p.add_argument("--no-timestamps", action="store_true", help="leave out the timestamp column")
    p.add_argument("--no-header", action="store_true", help="no header line (delimited text only)")
    p.add_argument("--sep", default=None, help="field separator (default: tab for .tsv, else comma)")
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows generated and written at a time")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    sep = a.sep or ("\t" if a.path.endswith((".tsv", ".tsv.gz")) else ",")
    t0 = time.perf_counter()
    out = write_large(a.path, a.rows, a.users or max(1, a.rows // 20), a.items or max(2, a.rows // 4),
                      header=not a.no_header, sep=sep, item_alpha=a.item_alpha, user_sigma=a.user_sigma,
                      ratings=not a.no_ratings, timestamps=not a.no_timestamps, string_ids=a.string_ids,
                      seed=a.seed, chunk_rows=a.chunk_rows)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

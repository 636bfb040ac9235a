"""Reads a trail with the analysts' tools and prints what they saw, as JSON.

Run by agent/tests/interop.rs with the virtual environment `cargo xtask setup` prepares
(target/pyenv: duckdb and pyarrow). Usage: check_trail.py TRAIL_DIR SCHEMA_MD

- Every SQL statement in the ```sql blocks of docs/schema.md runs in DuckDB, with the
  documented 'trail/segment-*.parquet' replaced by this trail's segments.
- pyarrow reads every segment; its leaf columns are compared with the columns the
  document's table lists.
- DuckDB's parquet_kv_metadata shows the footer key-value metadata.
The Rust test asserts on the output; this script only reports (and exits non-zero only
when a tool fails outright).
"""
import json
import re
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq


def documented_queries(md: str) -> list[str]:
    out = []
    for block in re.findall(r"```sql\n(.*?)```", md, re.S):
        for stmt in block.split(";"):
            lines = [l for l in stmt.strip().splitlines() if not l.strip().startswith("--")]
            sql = "\n".join(lines).strip()
            if sql:
                out.append(sql)
    return out


def documented_columns(md: str) -> set[str]:
    cols = set()
    for line in md.splitlines():
        m = re.match(r"\| `([a-z_.]+)` \|", line)
        if m:
            cols.add(m.group(1))
    return cols


def leaves(schema, prefix=""):
    import pyarrow as pa

    for field in schema:
        name = prefix + field.name
        if pa.types.is_struct(field.type):
            yield from leaves(list(field.type), name + ".")
        else:
            yield name


def plain(v):
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def main():
    trail, schema_md = Path(sys.argv[1]), Path(sys.argv[2])
    md = schema_md.read_text()
    glob = str(trail / "segment-*.parquet")
    con = duckdb.connect()
    queries = []
    for sql in documented_queries(md):
        real = sql.replace("'trail/segment-*.parquet'", f"'{glob}'")
        cur = con.execute(real)
        cols = [d[0] for d in cur.description]
        rows = [[plain(v) for v in r] for r in cur.fetchall()]
        queries.append({"sql": sql, "columns": cols, "rows": rows})

    documented = documented_columns(md)
    segments = sorted(trail.glob("segment-*.parquet"))
    rows = 0
    found = set()
    for seg in segments:
        table = pq.read_table(seg)
        rows += table.num_rows
        found.update(leaves(table.schema))

    def is_documented(c):
        return c in documented or (
            c.startswith("file_result.") and "file." + c[len("file_result."):] in documented
        )

    kv = con.execute(
        f"SELECT decode(key), decode(value) FROM parquet_kv_metadata('{glob}')"
    ).fetchall()
    print(
        json.dumps(
            {
                "queries": queries,
                "pyarrow": {
                    "segments": len(segments),
                    "rows": rows,
                    "leaves": sorted(found),
                    "undocumented": sorted(c for c in found if not is_documented(c)),
                },
                "kv": {k: v for k, v in kv},
                "versions": {"duckdb": duckdb.__version__, "pyarrow": __import__("pyarrow").__version__},
            }
        )
    )


if __name__ == "__main__":
    main()

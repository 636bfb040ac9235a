#!/bin/sh
# The built-in demo scenario: a tiny "order service" that writes, reads, renames and
# deletes files and starts helper processes. Run by `cargo xtask demo` under
# groundtruth-agent, in a fresh working directory.
set -e
mkdir -p orders archive
printf '{"order": 1, "item": "book", "qty": 2}\n' > orders/order-1.json
printf '{"order": 2, "item": "pen", "qty": 10}\n' > orders/order-2.json
cat orders/order-1.json orders/order-2.json | sort > orders/batch.jsonl
mv orders/order-1.json archive/order-1.json
rm orders/order-2.json
cat does-not-exist.json 2>/dev/null || true
( cd archive && wc -c order-1.json > ../orders/sizes.txt )
# Hand the batch to a "storage" service over loopback TCP (both ends are recorded:
# the storage process is labeled by its executable, see `cargo xtask demo`).
"$GT_STORAGE" serve:127.0.0.1:storage.port:38:12 &
"$GT_WORKLOAD" connect:127.0.0.1:storage.port:38:12
wait

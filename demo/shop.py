"""The built-in demo: a tiny shop of three services talking HTTP over loopback, each
writing an ECS audit log (JSON Lines). `cargo xtask demo` records it under
groundtruth-agent and compares the trail with the logs.

    shop.py driver DIR ORDERS     create DIR/data, start the three services, send ORDERS
                                  orders to the gateway, stop the services

The driver starts each service as its own executable name (DIR/bin/gt-gateway,
gt-orders, gt-storage: links to this Python), so the agent labels each one by its name.

- gateway: accepts POST /order from the driver, calls orders (POST /create), answers.
- orders: writes data/orders/order-N.json, calls storage (POST /archive?id=N).
- storage: copies the order to data/archive/order-N.json.part, renames it to
  data/archive/order-N.json, deletes data/orders/order-N.json.

Each service audits every action it takes (ECS: file actions with `file.path`,
connections with `source`/`destination`), with two bugs planted for the demo to find:
- orders audits writing an invoice for order 2 that it never writes (unsupported);
- storage forgets to audit deleting order 3's original (unaudited).
"""
import http.client
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def stamp():
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + ".%09dZ" % (t % 10**9)


class Audit:
    def __init__(self, service, path):
        self.service = service
        self.f = open(path, "a", buffering=1)

    def log(self, action, category, **fields):
        rec = {
            "@timestamp": stamp(),
            "service": {"name": self.service},
            "event": {"action": action, "category": [category]},
            "process": {"pid": os.getpid()},
        }
        rec.update(fields)
        self.f.write(json.dumps(rec) + "\n")

    def file(self, action, path):
        self.log(action, "file", file={"path": os.path.abspath(path)})

    def accepted(self, handler):
        ip, port = handler.client_address[:2]
        self.log("request-accepted", "network", network={"direction": "inbound"},
                 source={"ip": ip, "port": port},
                 destination={"port": handler.server.server_address[1]})

    def called(self, conn, service):
        ip, port = conn.sock.getpeername()[:2]
        self.log("call", "network", network={"direction": "outbound"},
                 destination={"ip": ip, "port": port}, service={"target": {"name": service}})


def call(audit, portdir, service, path):
    """POST to another service on its own connection, auditing the call."""
    port = int(open(os.path.join(portdir, service + ".port")).read())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    audit.called(conn, service)
    conn.request("POST", path, body=b"")
    body = conn.getresponse().read()
    conn.close()
    return body


def serve(name, portdir, handle):
    """Serve POSTs on a loopback port written to PORTDIR/NAME.port, until SIGTERM."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self):
            body = handle(self)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    tmp = os.path.join(portdir, name + ".port.tmp")
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, os.path.join(portdir, name + ".port"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def gateway(data, log, portdir):
    audit = Audit("gateway", log)

    def handle(h):
        audit.accepted(h)
        return call(audit, portdir, "orders", "/create?" + h.path.split("?", 1)[-1])

    serve("gateway", portdir, handle)


def orders(data, log, portdir):
    audit = Audit("orders", log)

    def handle(h):
        audit.accepted(h)
        n = int(h.path.split("id=", 1)[1])
        path = os.path.join(data, "orders", "order-%d.json" % n)
        with open(path, "w") as f:
            json.dump({"order": n, "item": "book", "qty": n}, f)
        audit.file("order-created", path)
        if n == 2:
            # Planted bug: the invoice is audited but never written.
            audit.file("invoice-written", os.path.join(data, "invoices", "invoice-2.pdf"))
        call(audit, portdir, "storage", "/archive?id=%d" % n)
        return b"ok %d\n" % n

    serve("orders", portdir, handle)


def storage(data, log, portdir):
    audit = Audit("storage", log)

    def handle(h):
        audit.accepted(h)
        n = int(h.path.split("id=", 1)[1])
        src = os.path.join(data, "orders", "order-%d.json" % n)
        dst = os.path.join(data, "archive", "order-%d.json" % n)
        with open(src, "rb") as f, open(dst + ".part", "wb") as out:
            out.write(f.read())
        audit.file("archive-created", dst + ".part")
        os.rename(dst + ".part", dst)
        audit.file("archive-moved", dst)
        os.unlink(src)
        if n != 3:
            # Planted bug: order 3's deletion goes unaudited.
            audit.file("order-file-deleted", src)
        return b"archived\n"

    serve("storage", portdir, handle)


def driver(base, count):
    data = os.path.join(base, "data")
    for d in ("orders", "archive", "invoices", "logs"):
        os.makedirs(os.path.join(data, d), exist_ok=True)
    bindir = os.path.join(base, "bin")
    os.makedirs(bindir, exist_ok=True)
    # Port files live in a temporary directory: not part of the shop's data.
    portdir = tempfile.mkdtemp(prefix="gt-demo-")
    procs = []
    try:
        for name in ("storage", "orders", "gateway"):
            exe = os.path.join(bindir, "gt-" + name)
            if not os.path.exists(exe):
                os.symlink(os.path.realpath(sys.executable), exe)
            log = os.path.join(data, "logs", name + ".jsonl")
            procs.append(subprocess.Popen([exe, os.path.abspath(__file__), name, data, log, portdir]))
        deadline = time.monotonic() + 30
        while not all(os.path.exists(os.path.join(portdir, n + ".port")) for n in ("storage", "orders", "gateway")):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                sys.exit("demo: a service did not start")
            time.sleep(0.01)
        port = int(open(os.path.join(portdir, "gateway.port")).read())
        for n in range(1, count + 1):
            with urllib.request.urlopen(urllib.request.Request(
                    "http://127.0.0.1:%d/order?id=%d" % (port, n), data=b"", method="POST"), timeout=30) as r:
                print("order %d: %s" % (n, r.read().decode().strip()))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        shutil.rmtree(portdir, ignore_errors=True)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "driver":
        driver(sys.argv[2], int(sys.argv[3]))
    else:
        {"gateway": gateway, "orders": orders, "storage": storage}[role](*sys.argv[2:5])

"""moto's server in its own process, the queue for the receiver benchmark's SQS path, so the
queue and the receiver do not share one interpreter (the machine has 2 cores).

`python -m bench.moto_proc` prints one JSON line `{"url": ...}` once it listens, and runs
until stdin closes.
"""

from __future__ import annotations

import json
import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(json.dumps({"url": f"http://{host}:{port}"}), flush=True)
    try:
        sys.stdin.read()  # until the benchmark closes our stdin (or dies): no orphan servers
    finally:
        server.stop()


if __name__ == "__main__":
    main()

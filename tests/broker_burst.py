"""Producer and consumer processes for the embedded broker's burst test.

    python -m tests.broker_burst produce FOLDER TAG COUNT [--transport T]
    python -m tests.broker_burst consume FOLDER OUT [--transport T]
    python -m tests.broker_burst hold FOLDER COUNT

Producers put COUNT messages each; a consumer takes messages until the file
FOLDER/stop exists and the queue has been empty for a second, then writes the
ids it received to OUT (one a line). Any error ends the process non-zero.
A holder takes COUNT messages without acknowledging them, prints "held" and
waits to be killed, as a worker killed mid-task does.
"""

import argparse
import time
from pathlib import Path

import kombu

TRANSPORT = "config.broker:Transport"


def connection(folder: Path, transport: str) -> kombu.Connection:
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "staging_folder": str(folder / "staging"),
        "claimed_folder": str(folder / "claimed"),
        "store_processed": False,
        "polling_interval": 0.01,
    }
    return kombu.Connection("filesystem://", transport=transport, transport_options=options)


def produce(folder: Path, tag: str, count: int, transport: str) -> None:
    # A payload of some size widens the stock transport's window between
    # creating a file and finishing it, as a real task's arguments do.
    padding = "x" * 4096
    with connection(folder, transport) as conn:
        queue = conn.SimpleQueue("burst")
        for n in range(count):
            queue.put({"id": f"{tag}-{n}", "padding": padding})
        queue.close()


def consume(folder: Path, out: Path, transport: str) -> None:
    received = []
    idle_since = None
    with connection(folder, transport) as conn:
        queue = conn.SimpleQueue("burst")
        while True:
            try:
                message = queue.get(block=True, timeout=0.2)
            except queue.Empty:
                if not (folder / "stop").exists():
                    continue
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 1:
                    break
                continue
            idle_since = None
            received.append(message.payload["id"])
            message.ack()
        queue.close()
    out.write_text("".join(f"{i}\n" for i in received))


def hold(folder: Path, count: int, transport: str) -> None:
    with connection(folder, transport) as conn:
        queue = conn.SimpleQueue("burst")
        for _ in range(count):
            queue.get(block=True, timeout=30)
        print("held", flush=True)
        time.sleep(600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["produce", "consume", "hold"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("args", nargs="+")
    parser.add_argument("--transport", default=TRANSPORT)
    options = parser.parse_args()
    if options.role == "produce":
        tag, count = options.args
        produce(options.folder, tag, int(count), options.transport)
    elif options.role == "hold":
        hold(options.folder, int(options.args[0]), options.transport)
    else:
        consume(options.folder, Path(options.args[0]), options.transport)


if __name__ == "__main__":
    main()

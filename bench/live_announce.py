"""What announcing run changes to live pages costs (runs/live.py): the time
a committing thread spends handing an announcement off, and how many the
sender gets out over the Redis channel layer per second. Needs REDIS_URL.

    REDIS_URL=redis://127.0.0.1:6379/15 python -m bench.live_announce [--calls 20000]
"""

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--distinct", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["LEDGERFLOW_LIVE_UPDATES"] = "channels"
    import django

    django.setup()
    from runs import live

    sender = live._sender()
    started = time.perf_counter()
    for n in range(args.calls):
        sender.announce(n % args.runs)
    handing = time.perf_counter() - started
    print(f"hand-off in the committing thread: {handing / args.calls * 1e6:.2f} us per commit "
          f"({args.calls} commits on {args.runs} runs)")  # fmt: skip
    while sender.pending:
        time.sleep(0.001)
    handled = sender.handled
    print(f"sent for those: {handled} (one per run while a send was pending)")
    started = time.perf_counter()
    for n in range(args.distinct):
        sender.announce(10**9 + n)
    while sender.handled < handled + args.distinct:
        time.sleep(0.001)
    took = time.perf_counter() - started
    print(f"{args.distinct} announcements on distinct runs sent in {took:.3f} s "
          f"({args.distinct / took:.0f} per second, one sender per process)")  # fmt: skip


if __name__ == "__main__":
    main()

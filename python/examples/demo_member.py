"""The demo's Python member of the pattern ``acct:{id}`` (beside the Rust members of
``examples/mixed.rs``): the same ``Account`` written in Python, its count in the fenced
state store, so that an account moves between Python and Rust members with its count.

    python python/examples/demo_member.py --redis URL --namespace NS --system ID

Prints ``READY`` once it serves; stops when its standard input ends (or at SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from conclib.actor import Actor, handler
from conclib.host import ActorHost


class Account(Actor):
    """A count saved (fenced) before each increment is answered."""

    async def on_start(self) -> None:
        self.count: int = await self.store.load(int) or 0

    @handler("demo.Incr")
    async def incr(self) -> int:
        await self.store.save(self.count + 1)
        self.count += 1
        return self.count

    @handler("demo.Balance")
    async def balance(self) -> int:
        return self.count


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--system", required=True)
    args = parser.parse_args()
    host = ActorHost(args.redis, namespace=args.namespace, system=args.system)
    host.serve_pattern("acct:{id}", Account)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(host.stop()))
    loop.add_reader(sys.stdin.fileno(), lambda: None if os.read(sys.stdin.fileno(), 1) else loop.create_task(host.stop()))
    await host.start()
    print("READY", flush=True)
    await host.wait()


if __name__ == "__main__":
    asyncio.run(main())

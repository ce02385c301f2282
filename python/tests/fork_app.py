"""A pre-forking server in miniature (gunicorn --preload, uvicorn --workers): the app connects
at import in the parent, then forks workers that ask through the same client object.

Run by test_fork.py as ``python fork_app.py URL NAMESPACE MODE WORKERS``; MODE is ``blocking``
or ``async``. Prints one line of JSON: what each side saw. Every child exits through the
interpreter's normal shutdown (so whatever it inherited is garbage-collected), and the parent
must still work afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import conclib

URN = "py:shapes"


def main() -> int:
    url, namespace, mode, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "blocking":
        client = conclib.Client(url, namespace=namespace)
        ask = lambda n: client.ask(URN, "Double", n, timeout=5)  # noqa: E731
        key = lambda: client.reply_key  # noqa: E731
    else:
        aclient = conclib.AsyncClient(url, namespace=namespace)

        def ask(n: int) -> int:
            async def one() -> int:
                result: int = await aclient.ask(URN, "Double", n, timeout=5)
                return result

            return asyncio.run(one())

        key = lambda: aclient.reply_key  # noqa: E731
    # Connected before forking, with a reply list and (blocking) a loop thread.
    assert ask(1) == 2
    parent_key = key()
    children = []
    for w in range(workers):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker
            os.close(read)
            try:
                results = [ask(100 * w + i) for i in range(20)]
                ok = results == [2 * (100 * w + i) for i in range(20)]
                report = {"ok": ok, "key": key(), "pid": os.getpid()}
            except BaseException as e:  # noqa: BLE001
                report = {"ok": False, "error": repr(e)}
            os.write(write, json.dumps(report).encode())
            os.close(write)
            sys.exit(0)  # the normal shutdown: inherited objects are collected
        os.close(write)
        children.append((pid, read))
    # The parent asks while its children do.
    parent_during = [ask(i) for i in range(20)] == [2 * i for i in range(20)]
    reports = []
    deadline = time.monotonic() + 60
    for pid, read in children:
        data = b""
        while chunk := os.read(read, 4096):
            data += chunk
        os.close(read)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                status = -1
                break
            time.sleep(0.01)
        report = json.loads(data or b"{}")
        report["status"] = status
        reports.append(report)
    # The parent still works after its children exited.
    parent_after = [ask(i) for i in range(20)] == [2 * i for i in range(20)]
    print(json.dumps({
        "parent_key": parent_key,
        "parent_key_after": key(),
        "parent_during": parent_during,
        "parent_after": parent_after,
        "children": reports,
    }))
    if mode == "blocking":
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

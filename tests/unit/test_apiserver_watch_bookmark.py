"""The bookmark that closes a timed-out watch never claims more than the stream sent.

Regression: the closing bookmark carried the store's head. When ``timeoutSeconds`` cut a
stream while it was still sending a batch, a client resuming from that bookmark skipped
the unsent changes for good (the allocator then never saw some Services).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import trio
import trio.testing

from purelb.apiserver._faults import FaultInjector
from purelb.apiserver._objects import Objects, WriteOptions
from purelb.apiserver._resources import Registry
from purelb.apiserver._selectors import parse_field_selector, parse_label_selector
from purelb.apiserver._services import ServiceAllocator
from purelb.apiserver._store import Store
from purelb.apiserver._watch import WatchStream

CLOCK = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_watch_cut_mid_send_by_its_timeout_bookmarks_only_what_it_delivered(
    autojump_clock: trio.testing.MockClock,
):
    store = Store(history_limit=10_000)
    registry = Registry.with_builtins()
    objects = Objects(store, registry, ServiceAllocator(), clock=lambda: CLOCK)
    objects.bootstrap_namespaces(("default",))
    rdef = registry.get("", "v1", "configmaps")
    start = store.rv
    objects.create(rdef, "default", {"metadata": {"name": "first"}}, WriteOptions())
    delivered: list[dict] = []
    stuck = trio.Event()

    async def write(data: bytes) -> None:
        events = [json.loads(line) for line in data.decode().splitlines()]
        if any(e["type"] == "ADDED" and e["object"]["metadata"]["name"] == "second"
               for e in events):
            stuck.set()
            await trio.sleep_forever()  # a slow client: the timeout cancels this send
        delivered.extend(events)

    watch = WatchStream(store=store, faults=FaultInjector(), rdef=rdef, namespace="default",
                        out=lambda _r, o: o, clock=lambda: CLOCK, bookmark_interval_s=3600.0,
                        labels=parse_label_selector(""), fields=parse_field_selector("", ()),
                        start_rv=start, table=False, bookmarks=True, initial_events_end=False,
                        timeout_s=5.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run, write)
        await trio.testing.wait_all_tasks_blocked()
        objects.create(rdef, "default", {"metadata": {"name": "second"}}, WriteOptions())
        await stuck.wait()
    bookmark = delivered[-1]
    assert bookmark["type"] == "BOOKMARK"
    second_rv = int(store.get(rdef.storage_key, "default", "second")["metadata"]
                    ["resourceVersion"])
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) < second_rv

"""Entries of two partitions may share an entry id; they are still two events.

Producers XADD with ``*``, so two partitions hand out the same entry id whenever they
take an entry in the same millisecond. Here the producer picks the ids itself to make
that certain. The contract's default event ids (``evt_p<partition>_<entry id>``) tell
the two apart, and each must reach the endpoint, retries included.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio
from conftest import AsyncRedis, daemon_config
from webhook_receiver import Receiver, Reply

from processes import running_daemons, webhookd_cli_json, write_config

SHARED_ENTRY_ID = "1000-1"


async def test_one_entry_id_in_two_partitions_makes_two_events(
    tmp_path: Path, redis_url: str, key_prefix: str, aredis: AsyncRedis, receiver: Receiver
) -> None:
    config = daemon_config(
        redis_url, key_prefix,
        stream={"partitions": 2, "block": 0.1},
        retry={"schedule": [0.2], "jitter": 0},
        log={"level": "warning"},
    )  # fmt: skip
    path = write_config(tmp_path / "webhookd.toml", config)
    await webhookd_cli_json(path, "endpoint", "add", "--vendor", "v_1", "--url", receiver.url())
    receiver.script("/hook", Reply(status=500), Reply(status=500))  # both first attempts fail
    for partition in (0, 1):
        fields = {"type": "order.created", "vendor": "v_1", "data": json.dumps({"p": partition})}
        stream = f"{config['stream']['name']}:{partition}"
        await aredis.xadd(stream, fields, identifier=SHARED_ENTRY_ID)
    async with running_daemons(path, tmp_path, 1):
        with trio.move_on_after(10):
            await receiver.wait_for(4)  # two failed attempts, two retries
    seen = [(r.headers["x-event-id"], json.loads(r.body)["data"]["p"]) for r in receiver.requests]
    assert set(seen[2:]) == {(f"evt_p{p}_{SHARED_ENTRY_ID}", p) for p in (0, 1)}, seen

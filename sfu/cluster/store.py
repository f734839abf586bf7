"""The cluster's shared state in Redis, through redis-py's asyncio client: the worker
records (expiring: a heartbeat renews them), room placement (claimed atomically by Lua
scripts: a room's key names its worker while that worker is alive), and pub/sub inboxes.

Redis is the cluster's own: only workers reach it (docs/scaling.md).  Everything read from
it is still validated (:mod:`.wire`), so a corrupt record is skipped, not trusted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from .wire import (
    PREFIX,
    Envelope,
    WorkerInfo,
    inbox,
    members_key,
    room_key,
    tombstone_key,
    worker_key,
    worker_pattern,
)

#: seconds a tombstone stays (long past any heartbeat timeout)
TOMBSTONE_TTL = 300

logger = logging.getLogger(__name__)

#: KEYS[1] the room; ARGV: candidate, TTL (ms), worker key prefix.  The room's worker if it
#: is alive, else the candidate, which now holds the room: its record counts the room at
#: once (the next placement, from any worker, sees it before the candidate's heartbeat)
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local record = redis.call('GET', ARGV[3] .. ARGV[1])
if record then
  local ok, info = pcall(cjson.decode, record)
  if ok and type(info) == 'table' and type(info.rooms) == 'number' then
    info.rooms = info.rooms + 1
    redis.call('SET', ARGV[3] .. ARGV[1], cjson.encode(info), 'KEEPTTL')
  end
end
return ARGV[1]
"""

#: KEYS: rooms; ARGV: worker, TTL (ms).  Renews the rooms the worker still holds; returns
#: the ones it no longer holds.
_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, key)
  end
end
return lost
"""

#: KEYS[1] the room; ARGV[1] the worker: lets the room go if the worker holds it
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

StoreError = RedisError


class ClusterStore:
    def __init__(self, url: str, ttl: float) -> None:
        #: seconds a worker record and a room claim live without renewal
        self.ttl = ttl
        self.redis: aioredis.Redis = aioredis.from_url(
            url, decode_responses=True, socket_timeout=max(1.0, ttl / 2), socket_connect_timeout=2
        )
        #: the inboxes' connection: bytes as they come (a message that is not UTF-8 is an
        #: envelope that does not validate, not a decoding error inside the client)
        self._raw: aioredis.Redis = aioredis.from_url(
            url, decode_responses=False, socket_connect_timeout=2
        )
        self._claim = self.redis.register_script(_CLAIM)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    async def close(self) -> None:
        await self.redis.aclose()
        await self._raw.aclose()

    # -- workers --------------------------------------------------------------------------
    async def register(self, info: WorkerInfo) -> None:
        """The worker's record, alive for ``ttl`` seconds more (the heartbeat)."""
        await self.redis.set(worker_key(info.worker), info.model_dump_json(), px=self._ttl_ms)

    async def unregister(self, worker: str) -> None:
        await self.redis.delete(worker_key(worker))

    async def bury(self, worker: str) -> None:
        """The worker is gone for sure (its process exited): out at once, and marked so
        that the others need not wait for its heartbeat timeout."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(worker_key(worker))
            pipe.set(tombstone_key(worker), "1", ex=TOMBSTONE_TTL)
            await pipe.execute()

    async def buried(self, workers: list[str]) -> set[str]:
        """Those of ``workers`` known to be gone for sure."""
        if not workers:
            return set()
        values = await self.redis.mget([tombstone_key(w) for w in workers])
        return {w for w, v in zip(workers, values, strict=True) if v is not None}

    async def workers(self) -> list[WorkerInfo]:
        """Every live worker (a record that does not validate is skipped)."""
        keys = [key async for key in self.redis.scan_iter(match=worker_pattern(), count=500)]
        if not keys:
            return []
        out = []
        for raw in await self.redis.mget(keys):
            if raw is None:  # expired between the scan and the read
                continue
            try:
                out.append(WorkerInfo.model_validate_json(raw))
            except ValidationError:
                logger.warning("cluster: a worker record in Redis does not validate; skipped")
        return out

    # -- rooms ----------------------------------------------------------------------------
    async def claim(self, room: str, candidate: str) -> str:
        """The worker hosting ``room``: its live holder, else ``candidate`` (which holds it
        from now on)."""
        owner = await self._claim(
            keys=[room_key(room)], args=[candidate, self._ttl_ms, f"{PREFIX}:worker:"]
        )
        return str(owner)

    async def holder(self, room: str) -> str | None:
        value = await self.redis.get(room_key(room))
        return None if value is None else str(value)

    async def renew(self, worker: str, rooms: list[str]) -> list[str]:
        """Renew ``worker``'s claims of ``rooms``; the rooms it no longer holds."""
        if not rooms:
            return []
        keys = [room_key(room) for room in rooms]
        lost = await self._renew(keys=keys, args=[worker, self._ttl_ms])
        prefix = room_key("")
        return [str(key)[len(prefix) :] for key in lost]

    async def release(self, room: str, worker: str) -> None:
        await self._release(keys=[room_key(room)], args=[worker])

    # -- cascaded rooms -------------------------------------------------------------------
    async def set_member(self, room: str, worker: str, participants: int) -> dict[str, int]:
        """``worker`` holds ``participants`` of ``room`` (renewed like a claim); every
        member, with its participants, afterwards."""
        key = members_key(room)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, worker, participants)
            pipe.pexpire(key, self._ttl_ms * 4)
            pipe.hgetall(key)
            *_, members = await pipe.execute()
        return _counts(members)

    async def members(self, room: str) -> dict[str, int]:
        return _counts(await self.redis.hgetall(members_key(room)))

    async def remove_member(self, room: str, worker: str) -> None:
        await self.redis.hdel(members_key(room), worker)

    # -- messages -------------------------------------------------------------------------
    async def send(self, worker: str, envelope: Envelope) -> bool:
        """Publish ``envelope`` to ``worker``'s inbox; False if nobody was listening (the
        worker is gone, or subscribing again after an outage: pub/sub keeps nothing)."""
        receivers = await self.redis.publish(
            inbox(worker), envelope.model_dump_json(exclude_none=True)
        )
        return int(receivers) > 0

    async def listen(self, worker: str) -> AsyncIterator[Envelope]:
        """The envelopes sent to ``worker`` (an envelope that does not validate is logged
        and skipped).  Raises RedisError when the connection is lost: the caller
        subscribes again."""
        pubsub: Any = self._raw.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(inbox(worker))
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    yield Envelope.model_validate_json(message["data"])
                except ValidationError:
                    logger.warning("cluster: an envelope does not validate; dropped")
        finally:
            try:
                await pubsub.aclose()
            except RedisError:
                pass


def _counts(raw: Mapping[Any, Any]) -> dict[str, int]:
    out = {}
    for worker, value in raw.items():
        try:
            out[str(worker)] = int(value)
        except (TypeError, ValueError):  # not ours: skipped
            continue
    return out

"""Several workers and nodes: rooms placed on workers through Redis, signaling relayed to
the worker that hosts a room, a supervisor that runs one worker per core (docs/scaling.md).

:mod:`.wire` (keys, the messages workers exchange), :mod:`.placement` (which worker takes a
room: sans-IO), :mod:`.store` (Redis, through redis-py's asyncio API), :mod:`.relay` (a
worker's part: heartbeat, placement, relayed sessions), :mod:`.supervisor` (the parent
process of ``sfu serve --workers N``).
"""

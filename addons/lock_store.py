"""A Redis lock store whose tickets are issued and released atomically, for several Rasa processes.

Open-source Rasa 3.6's `RedisLockStore` keeps each conversation's ticket lock as one JSON
value that every process reads, changes and writes back (`GET`, then `SET`): two Rasa
instances that take a ticket for the same conversation at the same moment both read the
same queue, both issue the same ticket number, and both go ahead at once. Each then loads
the same tracker, appends its turn and saves; Rasa's SQL tracker store only writes the
events beyond the number already stored, so the slower turn is silently dropped
(tests/addons/test_lock_store.py shows it across processes on a real Redis). The race-free
`ConcurrentRedisLockStore` is in Rasa's paid edition only.

`AtomicRedisLockStore` keeps the same ticket-lock semantics (first come, first served;
a ticket expires after the lock lifetime, so a killed instance cannot block a conversation
for good) but does every step in one Lua script, which Redis runs atomically: `INCR` hands
out the ticket, a sorted set keeps the queue in ticket order, a hash keeps each ticket's
deadline on Redis' own clock (no clock skew between machines), and the first live ticket
in the queue is the one served. Idle conversations leave no keys behind.

Configured in endpoints-cluster.yml:

    lock_store:
      type: addons.lock_store.AtomicRedisLockStore
      url: 127.0.0.1
      port: 6379
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis
from rasa.core.lock_store import LOCK_LIFETIME, LockError, LockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX = "ticketlock:"
DEFAULT_SOCKET_TIMEOUT_S = 10.0
# How often a waiting request asks whether its ticket is served; Rasa's own store waits 1 s.
POLL_INTERVAL_S = 0.05
# How long a ticket is asked for while Redis is unreachable (a restart takes about a second).
REDIS_RETRY_S = 15.0

# Milliseconds on Redis' clock; shared by the scripts below.
_NOW = "local clock = redis.call('TIME') local now = clock[1] * 1000 + math.floor(clock[2] / 1000) "

# KEYS: counter, queue, deadlines. ARGV: lifetime in ms. Returns the new ticket.
_ISSUE = (
    _NOW
    + """
local ticket = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], ticket, ticket)
redis.call('HSET', KEYS[3], ticket, now + tonumber(ARGV[1]))
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[1]) end
return ticket
"""
)

# KEYS: queue, deadlines. Drops expired tickets at the head; returns the first live one, or -1.
_SERVING = (
    _NOW
    + """
while true do
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not head then return -1 end
  if tonumber(redis.call('HGET', KEYS[2], head) or 0) > now then return tonumber(head) end
  redis.call('ZREM', KEYS[1], head)
  redis.call('HDEL', KEYS[2], head)
end
"""
)

# KEYS: counter, queue, deadlines. ARGV: ticket. Removes it; the keys go once the queue is empty.
_FINISH = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return 1
"""


async def _when_reachable(step: Callable[[], int]) -> int:
    """`step`, retried while Redis is briefly unreachable (a restart takes about a second)."""
    deadline = time.monotonic() + REDIS_RETRY_S
    while True:
        try:
            return step()
        except redis.ConnectionError as error:
            if time.monotonic() > deadline:
                raise LockError(f"Redis is unreachable: {error}") from error
            logger.warning(f"Redis is unreachable, asking again: {error}")
            await asyncio.sleep(0.5)


class AtomicRedisLockStore(LockStore):
    """Ticket locks in Redis, each step one atomic script: safe for many Rasa processes."""

    def __init__(
        self,
        endpoint_config: EndpointConfig | None = None,
        *,
        client: redis.Redis | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> None:
        """From the endpoint file's `url` (host), `port`, `db`, `password`, `key_prefix`, or a client."""
        if client is None:
            settings: dict[str, Any] = dict(endpoint_config.kwargs) if endpoint_config else {}
            client = redis.Redis(
                host=(endpoint_config.url if endpoint_config else None) or "127.0.0.1",
                port=int(settings.get("port", 6379)),
                db=int(settings.get("db", 0)),
                password=settings.get("password"),
                socket_timeout=float(settings.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT_S)),
                socket_connect_timeout=float(settings.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT_S)),
            )
            key_prefix = str(settings.get("key_prefix", key_prefix))
        self.red = client
        self.key_prefix = key_prefix
        self._issue = client.register_script(_ISSUE)
        self._serving = client.register_script(_SERVING)
        self._finish = client.register_script(_FINISH)
        super().__init__()

    def _keys(self, conversation_id: str) -> list[str]:
        base = f"{self.key_prefix}{conversation_id}"
        return [f"{base}:next", f"{base}:queue", f"{base}:deadlines"]

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        """Joins the conversation's queue: the ticket number, one more than the last one issued."""
        return int(self._issue(keys=self._keys(conversation_id), args=[int(lock_lifetime * 1000)]))

    async def _issue_when_reachable(self, conversation_id: str, lock_lifetime: float) -> int:
        return await _when_reachable(lambda: self.issue_ticket(conversation_id, lock_lifetime))

    async def _serving_when_reachable(self, conversation_id: str) -> int:
        return await _when_reachable(lambda: self.now_serving(conversation_id))

    def now_serving(self, conversation_id: str) -> int:
        """The first live ticket of the conversation's queue; -1 when the queue is empty."""
        keys = self._keys(conversation_id)[1:]
        return int(self._serving(keys=keys))

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        """Leaves the queue, so that the next ticket is served."""
        self._finish(keys=self._keys(conversation_id), args=[ticket_number])

    async def _release_when_reachable(self, conversation_id: str, ticket_number: int) -> None:
        """Leaves the queue, waiting out a Redis restart; failing that, the ticket expires on its own."""

        def release() -> int:
            self.finish_serving(conversation_id, ticket_number)
            return ticket_number

        try:
            await _when_reachable(release)
        except (LockError, redis.RedisError) as error:
            logger.warning(f"Could not release ticket {ticket_number} of '{conversation_id}': {error}")

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: str,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = POLL_INTERVAL_S,
    ) -> AsyncIterator[None]:
        """Holds the conversation's lock for the block, after every earlier ticket is done.

        Raises `LockError` when the ticket expired while waiting (Rasa's behaviour too).
        """
        ticket = await self._issue_when_reachable(conversation_id, lock_lifetime)
        try:
            while (serving := await self._serving_when_reachable(conversation_id)) != ticket:
                if serving == -1 or serving > ticket:
                    raise LockError(f"The ticket for conversation '{conversation_id}' expired while waiting.")
                await asyncio.sleep(min(wait_time_in_seconds, POLL_INTERVAL_S))
            yield None
        finally:
            await self._release_when_reachable(conversation_id, ticket)

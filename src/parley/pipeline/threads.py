"""Message threads in the message pipeline: a thread turn is found, checked and
claimed before anything else of the request runs, and kept once its reply is whole.

- `create`: the request runs as it is; its conversation and reply are kept under the
  reply's id when the reply is complete (`message_stop`).
- `continue`: the reply named by `previous_message_id` must be this key's, unexpired,
  not continued yet and not being continued (`thread_not_found`,
  `thread_already_continued`, `thread_continue_in_flight`); the fixed fields must
  match (`thread_fingerprint_mismatch`). The reply is then claimed in the store, so
  no other replica continues it meanwhile, and the request runs as the full
  conversation (core/threads.py). The new turn is kept under its own reply's id and
  the claim given back as `continued`.
- Nothing is kept for a turn that did not complete (an error, a client gone before
  `message_stop`) or that the model refused (stop_reason `refusal`): the SDKs then
  start a new thread with the whole conversation (message-threads doc §1.3). Its
  claim is given back, so the same `continue` can be sent again.

A thread lives `thread_lifetime_days` after its last turn; expired threads answer
`thread_not_found` at once and are deleted by a clean-up pass every few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from parley.core.records import ApiKey
from parley.core.threads import (
    StoredTurn,
    continued_params,
    differing_fields,
    dumps,
    fingerprint,
    new_messages_json,
    reply_json,
    system_json,
    thread_already_continued,
    thread_continue_in_flight,
    thread_fingerprint_mismatch,
    thread_not_found,
    tools_json,
)
from parley.protocol.requests import MessageCreateParams, ThreadContinue
from parley.protocol.responses import Message
from parley.ratelimit.limiter import Clock
from parley.store.threads import NewThread, ThreadReply, ThreadStore

log = logging.getLogger(__name__)

# A claim outlasts any one generation; a claim of a replica that died lapses after it
# (meanwhile the SDKs answer `thread_continue_in_flight` by starting a new thread).
CLAIM = timedelta(minutes=30)
# Seconds between clean-up passes. Expiry itself is exact: an expired thread is never
# continued, whenever its rows go.
SWEEP_INTERVAL = 300.0


@dataclass
class ThreadTurn:
    """A thread turn on its way: the request that runs for it, and what to keep."""

    params: MessageCreateParams
    _threads: Threads
    _key_id: str
    _fingerprint: str
    _system: str | None
    _tools: str | None
    _messages: str
    _continues: ThreadReply | None = None
    _token: str | None = None
    _done: bool = False

    async def keep(self, message: Message) -> None:
        """The reply is complete: keep the turn (unless it was refused)."""
        if self._done or message.stop_reason == "refusal":
            return
        turn = StoredTurn(self._messages, reply_json(message))
        now, expires_at = self._threads.now_and_expiry()
        if self._continues is None:
            thread = NewThread(
                message.id, self._key_id, self._fingerprint, self._system, self._tools
            )
            await self._threads.store.create(thread, turn, now, expires_at)
        else:
            assert self._token is not None
            kept = await self._threads.store.append(
                self._continues, self._token, message.id, turn, expires_at
            )
            if not kept:
                log.info("thread turn %s not kept: its claim lapsed or the thread went", message.id)
        self._done = True

    async def release(self) -> None:
        """The turn ends without being kept: give its claim back."""
        if self._done:
            return
        self._done = True
        if self._continues is not None and self._token is not None:
            await self._threads.store.release(self._continues.message_id, self._token)


class Threads:
    def __init__(self, store: ThreadStore, clock: Clock, lifetime: timedelta) -> None:
        self.store = store
        self._clock = clock
        self._lifetime = lifetime
        self._sweeper: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def now_and_expiry(self) -> tuple[datetime, datetime]:
        now = self.now()
        return now, now + self._lifetime

    async def begin(self, key: ApiKey, model_id: str, params: MessageCreateParams) -> ThreadTurn:
        """Check (and for a `continue`, claim) the thread turn `params` asks for; every
        refusal is an APIError raised here, before the request goes any further."""
        thread = params.thread
        current = fingerprint(params, model_id)
        if not isinstance(thread, ThreadContinue):
            return ThreadTurn(
                params,
                self,
                key.id,
                dumps(current),
                system_json(params),
                tools_json(params),
                new_messages_json(params),
            )
        previous = thread.previous_message_id
        now = self.now()
        loaded = await self.store.load(previous)
        if loaded is None or loaded[0].key_id != key.id or loaded[0].expires_at <= now:
            raise thread_not_found(previous)
        reply, history = loaded
        if reply.continued_by is not None:
            raise thread_already_continued(previous)
        if reply.claimed(now):
            raise thread_continue_in_flight(previous)
        differing = differing_fields(json.loads(reply.fingerprint), current)
        if differing:
            raise thread_fingerprint_mismatch(differing)
        full = continued_params(params, reply.system, reply.tools, history)
        token = secrets.token_hex(16)
        if not await self.store.claim(previous, token, now, now + CLAIM):
            again = await self.store.find(previous)
            if again is None:
                raise thread_not_found(previous)
            if again.continued_by is not None:
                raise thread_already_continued(previous)
            raise thread_continue_in_flight(previous)
        return ThreadTurn(
            full,
            self,
            key.id,
            reply.fingerprint,
            reply.system,
            reply.tools,
            new_messages_json(params),
            _continues=reply,
            _token=token,
        )

    # -- clean-up ----------------------------------------------------------------------

    async def sweep(self) -> int:
        """Delete expired threads now; returns how many went."""
        return await self.store.sweep(self.now())

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="thread-sweeper")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        while True:
            try:
                gone = await self.sweep()
                if gone:
                    log.info("deleted %d expired message threads", gone)
            except Exception:
                log.exception("message threads: clean-up failed")
            await asyncio.sleep(SWEEP_INTERVAL)

"""The queue edge: EventBridge -> SQS -> this consumer -> the same intake as POST /events.

An EventBridge rule whose target is an SQS queue writes each matching event, exactly as it
would POST it, as the message body. The consumer long-polls the queue and hands each body to
the app's `Intake` (scope, dedupe by event id, coalescing per repository). A message is
deleted only once it is handled:

- ignored (a DELETE event, another account or region, ...) or a duplicate: at once;
- accepted or coalesced: once the prune it rides on finished without failures
  (`Answer.settled`). While it waits, its visibility is extended (a heartbeat), so the queue
  does not hand it to another consumer mid-prune;
- the prune failed, or was unfinished at shutdown: left, and the queue redelivers it after
  its visibility timeout;
- the backlog is full: left, and receiving pauses for the `retry_after` the intake gives;
- it cannot be parsed: left, so that the queue's redrive policy moves it to the dead-letter
  queue after `maxReceiveCount` receipts. It is logged without its body.

The calls and their limits are the Amazon SQS API reference's (ReceiveMessage: at most 10
messages and a 20 s long poll; ChangeMessageVisibility; DeleteMessage; GetQueueAttributes),
and the redelivery rules the developer guide's "Amazon SQS visibility timeout" and "Using
dead-letter queues in Amazon SQS". SQS has no attribute for the age of the oldest message
(that is the CloudWatch metric ApproximateAgeOfOldestMessage), so the consumer reports the
age of the oldest message it holds, from each message's SentTimestamp.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cleaner.clients.aws import AwsApi, CallHook, open_client
from cleaner.errors import ConfigError, InvalidRequest, QueueError, Rejected
from cleaner.ports import Answer, Intake, Status
from cleaner.receiver.metrics import QueueMetrics

log = logging.getLogger(__name__)

RECEIVE_WAIT_S = 20
"""WaitTimeSeconds: the longest long poll SQS allows; an empty queue costs 3 calls a minute."""
RECEIVE_BATCH = 10
"""MaxNumberOfMessages: the most one ReceiveMessage returns."""
ANSWER_MARGIN_S = 10
"""A long poll that has not answered this long after its wait is abandoned and retried."""
MIN_HEARTBEAT_S = 0.5
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
DEPTH_ATTRIBUTES = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")
_AWS_HOST = re.compile(r".+\.amazonaws\.com(?:\.cn)?")


def queue_endpoint(url: str) -> tuple[str | None, str | None]:
    """(region, endpoint URL) for the client that serves the queue at `url`.

    An AWS queue URL (`https://sqs.eu-west-1.amazonaws.com/ACCOUNT/NAME`) names its region
    and leaves the endpoint to the AWS chain (`AWS_ENDPOINT_URL_SQS`, else the standard one).
    Any other host is a local server (moto, ElasticMQ) and is its own endpoint. The JSON
    protocol sends every call to the client's endpoint, with the queue URL in the body.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not _AWS_HOST.fullmatch(host):
        return None, f"{parts.scheme}://{parts.netloc}"
    region = next((label for label in host.split(".") if _REGION.fullmatch(label)), None)
    return region, None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    receipt: str
    body: bytes
    sent_at: float | None
    """Epoch seconds the queue accepted it (its SentTimestamp attribute)."""
    receive_count: int


def _message(raw: Mapping[str, Any]) -> Message:
    attributes = raw.get("Attributes") or {}
    sent = attributes.get("SentTimestamp")
    return Message(
        id=raw["MessageId"],
        receipt=raw["ReceiptHandle"],
        # A lone surrogate survives as bytes that are not UTF-8: the intake calls it invalid.
        body=str(raw.get("Body", "")).encode("utf-8", "surrogatepass"),
        sent_at=int(sent) / 1000 if sent else None,
        receive_count=int(attributes.get("ApproximateReceiveCount") or 0),
    )


class SqsQueue:
    """One SQS queue through an aiobotocore client: the four calls the consumer makes."""

    def __init__(self, client: Any, url: str, *, on_call: CallHook | None = None) -> None:
        self.url = url
        self._api = AwsApi(client, error=QueueError, on_call=on_call)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        *,
        region: str | None = None,
        on_call: CallHook | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> AsyncIterator[SqsQueue]:
        """From the standard AWS chain (IRSA, Pod Identity, ...), unless given keys (a local
        server); `region` when the URL names none."""
        url_region, endpoint = queue_endpoint(url)
        async with open_client(
            "sqs",
            region=url_region or region,
            endpoint_url=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            read_timeout=RECEIVE_WAIT_S + ANSWER_MARGIN_S,
        ) as client:
            yield cls(client, url, on_call=on_call)

    async def receive(self, most: int, wait_s: int) -> list[Message]:
        answer = await self._api.call(
            "ReceiveMessage",
            QueueUrl=self.url,
            MaxNumberOfMessages=most,
            WaitTimeSeconds=wait_s,
            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        )
        return [_message(raw) for raw in answer.get("Messages", ())]

    async def delete(self, receipt: str) -> None:
        await self._api.call("DeleteMessage", QueueUrl=self.url, ReceiptHandle=receipt)

    async def extend(self, receipt: str, seconds: int) -> None:
        """Hide the message for `seconds` more, counted from now."""
        await self._api.call(
            "ChangeMessageVisibility",
            QueueUrl=self.url,
            ReceiptHandle=receipt,
            VisibilityTimeout=seconds,
        )

    async def attributes(self, *names: str) -> dict[str, str]:
        answer = await self._api.call(
            "GetQueueAttributes", QueueUrl=self.url, AttributeNames=list(names)
        )
        return dict(answer.get("Attributes") or {})


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    wait_s: int = RECEIVE_WAIT_S
    """Each ReceiveMessage's WaitTimeSeconds (tests use 1 s)."""
    batch: int = RECEIVE_BATCH
    max_held: int = 500
    """Messages waiting for their prune at once; receiving pauses beyond this."""
    finish_s: float = 5.0
    """After the drain, how long deleting the handled messages may take."""
    backoff_s: float = 1.0
    """Pause after a failed receive; doubles per failure in a row, up to `backoff_max_s`."""
    backoff_max_s: float = 30.0
    depth_every_s: float = 60.0
    """How often the queue's message counts are read for the metrics."""


@dataclass(slots=True)
class _Held:
    message: Message
    receipt: str
    """The newest receipt handle: a redelivery while held brings a new one, and SQS may
    ignore a delete or an extension that names an older one."""


class QueueConsumer:
    """The `Edge` that feeds an SQS queue's messages to the app's intake."""

    def __init__(
        self,
        queue: SqsQueue,
        metrics: QueueMetrics,
        settings: ConsumerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._metrics = metrics
        self._settings = settings or ConsumerSettings()
        self._clock = clock
        self._intake: Intake | None = None
        self._visibility_s = 30
        self._held: dict[str, _Held] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._room = asyncio.Event()
        self._resume_at = 0.0
        self._problem: str | None = "not started"
        metrics.oldest_age.set_function(self._oldest_age)

    async def start(self, intake: Intake) -> None:
        """Read the queue's visibility timeout (the heartbeat's period), then receive."""
        attributes = await self._queue_settings()
        self._visibility_s = int(attributes.get("VisibilityTimeout", self._visibility_s))
        if "RedrivePolicy" not in attributes:
            log.warning(
                "the queue has no redrive policy: a message that cannot be parsed comes back "
                "until it expires, instead of moving to a dead-letter queue"
            )
        self._intake, self._problem = intake, None
        self._background = [
            asyncio.create_task(self._receive_loop(), name="receive from the queue"),
            asyncio.create_task(self._watch_depth(), name="read the queue's depth"),
        ]
        log.info(
            "consuming %s (visibility timeout %d s)",
            self._queue.url,
            self._visibility_s,
            extra={"queue_url": self._queue.url, "visibility_timeout": self._visibility_s},
        )

    async def stop(self) -> None:
        """Receive no more; what is held keeps its heartbeat until `finish`."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        if self._intake is not None:
            self._problem = "stopped"

    async def finish(self) -> None:
        """Once the scheduler has closed, every held message knows its outcome: delete the
        handled ones (bounded). A message whose handler is cut short is left, not deleted."""
        if not self._handlers:
            return
        _, unfinished = await asyncio.wait(set(self._handlers), timeout=self._settings.finish_s)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)

    async def readiness(self) -> str | None:
        return None if self._problem is None else f"queue: {self._problem}"

    # --- receiving ---------------------------------------------------------------------------

    async def _queue_settings(self) -> dict[str, str]:
        try:
            return await self._queue.attributes("VisibilityTimeout", "RedrivePolicy")
        except QueueError as error:
            if error.code in MISSING_QUEUE_CODES:
                raise ConfigError(f"--queue-url {self._queue.url}: no such queue") from error
            raise

    async def _receive_loop(self) -> None:
        failures = 0
        while True:
            room = await self._room_to_receive()
            wait_s = self._settings.wait_s
            try:
                async with asyncio.timeout(wait_s + ANSWER_MARGIN_S):
                    messages = await self._queue.receive(room, wait_s)
            except Exception as error:  # the loop must outlive any one failure
                failures += 1
                self._failed("ReceiveMessage", error, unready=True)
                await asyncio.sleep(self._backoff(failures))
                continue
            failures, self._problem = 0, None
            for message in messages:  # no await in between: nothing received goes untracked
                try:
                    self._take(message)
                except Exception as error:  # left in the queue; the loop goes on
                    self._failed("intake", error)

    async def _room_to_receive(self) -> int:
        loop = asyncio.get_running_loop()
        while True:
            if (pause := self._resume_at - loop.time()) > 0:
                await asyncio.sleep(pause)
                continue
            room = min(self._settings.batch, self._settings.max_held - len(self._held))
            if room > 0:
                return room
            self._room.clear()
            await self._room.wait()

    def _backoff(self, failures: int) -> float:
        doubled: float = self._settings.backoff_s * 2.0 ** (failures - 1)
        return min(self._settings.backoff_max_s, doubled)

    def _take(self, message: Message) -> None:
        self._metrics.received.inc()
        held = self._held.get(message.id)
        if held is not None:  # its visibility ran out while it waited, and it came back
            held.receipt = message.receipt
            return
        assert self._intake is not None  # noqa: S101 - start() sets it before receiving
        try:
            answer = self._intake.submit(message.body)
        except InvalidRequest as error:
            self._poison(message, error)
            return
        except Rejected as error:
            self._metrics.left.labels("rejected").inc()
            self._resume_at = asyncio.get_running_loop().time() + error.retry_after
            log.warning("queue intake paused for %d s: %s", error.retry_after, error)
            return
        held = self._held[message.id] = _Held(message, message.receipt)
        task = asyncio.create_task(self._settle(held, answer), name=f"message {message.id}")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _poison(self, message: Message, error: InvalidRequest) -> None:
        """Left for the redrive policy; the body is not logged (the reason is bounded)."""
        self._metrics.poison.inc()
        log.warning(
            "message %s cannot be parsed (%d bytes, received %d times); left for the "
            "dead-letter queue: %s",
            message.id,
            len(message.body),
            message.receive_count,
            error,
            extra={"message_id": message.id, "receive_count": message.receive_count},
        )

    # --- one message -------------------------------------------------------------------------

    async def _settle(self, held: _Held, answer: Answer) -> None:
        outcome: bool | None = None
        try:
            outcome = await self._outcome(held, answer)
            if outcome:
                await self._delete(held)
        finally:  # also when cut short at shutdown: then it never finished, and stays
            if not outcome:
                self._leave(held, answer, "failed" if outcome is False else "unfinished")
            del self._held[held.message.id]
            self._room.set()

    async def _outcome(self, held: _Held, answer: Answer) -> bool | None:
        """True when handled, False when its prune failed, None when it never finished."""
        if answer.status in (Status.IGNORED, Status.DUPLICATE):
            return True
        settled = answer.settled
        if settled is None:
            return False
        every = max(MIN_HEARTBEAT_S, self._visibility_s / 2)
        while not settled.done():
            await asyncio.wait({settled}, timeout=every)  # never cancels the shared future
            if not settled.done():
                await self._extend(held)
        return None if settled.cancelled() else settled.result()

    async def _extend(self, held: _Held) -> None:
        try:
            await self._queue.extend(held.receipt, max(1, self._visibility_s))
        except QueueError as error:
            self._failed("ChangeMessageVisibility", error)

    async def _delete(self, held: _Held) -> None:
        try:
            await self._queue.delete(held.receipt)
        except QueueError as error:
            # It comes back after its visibility timeout and is then a duplicate.
            self._failed("DeleteMessage", error)
            return
        self._metrics.deleted.inc()

    def _leave(self, held: _Held, answer: Answer, reason: str) -> None:
        self._metrics.left.labels(reason).inc()
        log.info(
            "message %s left for redelivery: the prune of %s %s",
            held.message.id,
            answer.repository,
            "failed" if reason == "failed" else "did not finish",
            extra={"message_id": held.message.id, "repository": answer.repository},
        )

    # --- health and figures ------------------------------------------------------------------

    def _failed(self, operation: str, error: Exception, *, unready: bool = False) -> None:
        known = isinstance(error, QueueError | TimeoutError)
        self._metrics.errors.labels(operation if known else "internal").inc()
        why = str(error) or type(error).__name__
        if unready:
            self._problem = f"{operation} failed: {why[:200]}"
        if known:
            log.warning("queue: %s failed: %s", operation, why, extra={"operation": operation})
        else:
            log.exception("queue: %s failed unexpectedly", operation)

    async def _watch_depth(self) -> None:
        while True:
            try:
                attributes = await self._queue.attributes(*DEPTH_ATTRIBUTES.values())
            except QueueError as error:
                self._failed("GetQueueAttributes", error)
            else:
                for state, name in DEPTH_ATTRIBUTES.items():
                    self._metrics.messages.labels(state).set(int(attributes.get(name) or 0))
            await asyncio.sleep(self._settings.depth_every_s)

    def _oldest_age(self) -> float:
        sent = [at for h in self._held.values() if (at := h.message.sent_at) is not None]
        return max(0.0, self._clock() - min(sent)) if sent else 0.0

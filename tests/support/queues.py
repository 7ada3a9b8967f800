"""SQS queues on moto's server for the queue-intake tests, set up and read with boto3.

Setup and inspection are the tests' own calls, short ones only: no long poll here (moto's
has been seen to hang), and every call is bounded by the client's timeouts. The consumer
under test talks to the same server with its own aiobotocore client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.backends import REGION

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "events"


class TestQueue:
    """A standard queue and its dead-letter queue (redrive after `max_receives` receipts)."""

    __test__ = False  # not a pytest class

    def __init__(
        self, endpoint_url: str, name: str = "push-events", *, visibility_s: int = 1,
        max_receives: int = 2,
    ) -> None:  # fmt: skip
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "sqs",
            region_name=REGION,
            endpoint_url=endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(connect_timeout=5, read_timeout=5, retries={"total_max_attempts": 1}),
        )
        self.dlq_url = self.client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self.attributes(self.dlq_url, "QueueArn")["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
        self.url = self.client.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(visibility_s),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]

    def attributes(self, url: str, *names: str) -> dict[str, str]:
        answer = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
        return dict(answer.get("Attributes", {}))

    def send(self, body: bytes | str) -> str:
        text = body.decode() if isinstance(body, bytes) else body
        return str(self.client.send_message(QueueUrl=self.url, MessageBody=text)["MessageId"])

    def counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) as the queue reports them."""
        found = self.attributes(
            url or self.url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
        )
        return int(found["ApproximateNumberOfMessages"]), int(
            found["ApproximateNumberOfMessagesNotVisible"]
        )

    def empty(self) -> bool:
        return self.counts() == (0, 0)

    def dead_letters(self) -> list[str]:
        """The dead-letter queue's bodies (a short poll; they stay there for 30 s)."""
        answer = self.client.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
        )
        return [m["Body"] for m in answer.get("Messages", [])]


def sample_event(
    name: str, repository: str, *, event_id: str | None = None, **fields: Any
) -> bytes:
    """A verbatim AWS sample with the repository renamed, in the tests' region; `fields`
    replace top-level fields (account, ...)."""
    doc = json.loads((SAMPLES / f"{name}.json").read_text())
    doc["detail"]["repository-name"] = repository
    doc["region"] = REGION
    if event_id is not None:
        doc["id"] = event_id
    doc.update(fields)
    return json.dumps(doc).encode()

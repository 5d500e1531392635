"""A bucket (and an SQS queue for its notifications) on the session's moto server and a job
template for the watch tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tr_watch import Bucket


@pytest.fixture
def bucket(moto_server: str) -> Iterator[Bucket]:
    boto3 = pytest.importorskip("boto3")
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"uploads-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    yield Bucket(moto_server, name, s3)


@pytest.fixture
def notified(bucket: Bucket) -> str:
    """An SQS queue that receives the bucket's ObjectCreated events; returns its URL."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=bucket.endpoint, region_name="us-east-1")
    # a short visibility timeout: what a killed watcher received comes back soon
    created = sqs.create_queue(
        QueueName=f"{bucket.name}-events", Attributes={"VisibilityTimeout": "2"}
    )
    url = str(created["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    bucket.s3.put_bucket_notification_configuration(
        Bucket=bucket.name,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn["QueueArn"], "Events": ["s3:ObjectCreated:*"]},
            ]
        },
    )
    return url


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.json"
    document = {"name": "scan", "pipeline": [{"task": "detect", "model": "det"}]}
    path.write_text(json.dumps(document))
    return path

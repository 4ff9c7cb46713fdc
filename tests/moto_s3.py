"""An S3 of a test module's own: a moto server of its own (not the session's stack), with one bucket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from tests.credentials import moto_credentials


def own_s3(bucket: str) -> Iterator[Any]:
    """Yields an S3 client of a fresh moto server holding ``bucket``; stops the server after."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        # moto's IAM checks are the process's: where a local stack enforces them, its admin signs
        **moto_credentials(),
    )
    client.create_bucket(Bucket=bucket)
    try:
        yield client
    finally:
        server.stop()

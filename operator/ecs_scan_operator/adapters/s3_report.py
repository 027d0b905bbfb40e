"""Amazon S3 report sink: server-side encrypted objects (AES256, or KMS when a key is given)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from ecs_scan_operator.adapters.aws_session import AwsClients, error_code, map_aws_error


class S3ReportSink:
    """ReportSink over one bucket."""

    def __init__(
        self, clients: AwsClients, bucket: str, region: str, *, kms_key_id: str | None = None
    ) -> None:
        self._s3 = clients.base("s3", region)
        self._region = region
        self._bucket = bucket
        self._kms = kms_key_id

    def put(self, key: str, body: bytes, content_type: str) -> None:
        """PutObject is atomic: the object appears whole or not at all."""
        extra: dict[str, Any] = {"ServerSideEncryption": "AES256"}
        if self._kms:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self._kms}
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise map_aws_error(exc, f"s3:PutObject s3://{self._bucket}/{key}") from exc

    def get(self, key: str) -> bytes | None:
        """None when the object does not exist."""
        try:
            resp = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise map_aws_error(exc, f"s3:GetObject s3://{self._bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise map_aws_error(exc, f"s3:GetObject s3://{self._bucket}/{key}") from exc
        body: bytes = resp["Body"].read()
        return body

    def uri(self, key: str) -> str:
        """s3://bucket/key."""
        return f"s3://{self._bucket}/{key}"

    def link(self, key: str) -> str:
        """The S3 console page of the object: works for anyone with read access, and never expires
        (a presigned URL would leak read access to whoever sees the ticket, for up to 7 days)."""
        return (
            f"https://{self._region}.console.aws.amazon.com/s3/object/{self._bucket}"
            f"?region={self._region}&prefix={quote(key, safe='/')}"
        )

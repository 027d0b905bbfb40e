"""Amazon S3 report sink: server-side encrypted objects (AES256, or KMS when a key is given)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from ecs_scan_operator.adapters.aws_session import AwsClients, error_code, map_aws_error
from ecs_scan_operator.errors import ConflictError
from ecs_scan_operator.ports import StoredObject


class S3ReportSink:
    """ReportSink over one bucket."""

    def __init__(
        self, clients: AwsClients, bucket: str, region: str, *, kms_key_id: str | None = None
    ) -> None:
        self._s3 = clients.base("s3", region)
        self._region = region
        self._bucket = bucket
        self._kms = kms_key_id

    def _encryption(self) -> dict[str, Any]:
        if self._kms:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self._kms}
        return {"ServerSideEncryption": "AES256"}

    def put(self, key: str, body: bytes, content_type: str) -> None:
        """PutObject is atomic: the object appears whole or not at all."""
        try:
            self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=body, ContentType=content_type, **self._encryption()
            )
        except (ClientError, BotoCoreError) as exc:
            raise map_aws_error(exc, f"s3:PutObject s3://{self._bucket}/{key}") from exc

    def put_if(self, key: str, body: bytes, content_type: str, *, etag: str | None) -> str:
        """PutObject with If-None-Match: * (etag None) or If-Match: etag; ConflictError if it fails."""
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        what = f"s3:PutObject s3://{self._bucket}/{key}"
        try:
            resp = self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                **condition,
                **self._encryption(),
            )
        except ClientError as exc:
            if etag is not None and error_code(exc) in ("NoSuchKey", "404"):
                # If-Match on an object that is gone: it changed as much as it can.
                err = ConflictError(f"{what}: the object was deleted since it was read")
                err.cause = map_aws_error(exc, what).cause
                raise err from exc
            raise map_aws_error(exc, what) from exc
        except BotoCoreError as exc:
            raise map_aws_error(exc, what) from exc
        return str(resp["ETag"])

    def read(self, key: str) -> StoredObject | None:
        """GetObject with its ETag; None when the object does not exist."""
        what = f"s3:GetObject s3://{self._bucket}/{key}"
        try:
            resp = self._s3.get_object(Bucket=self._bucket, Key=key)
            body: bytes = resp["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise map_aws_error(exc, what) from exc
        except BotoCoreError as exc:
            raise map_aws_error(exc, what) from exc
        return StoredObject(body, str(resp["ETag"]))

    def delete_if(self, key: str, *, etag: str) -> None:
        """DeleteObject with If-Match; an object already gone is fine."""
        what = f"s3:DeleteObject s3://{self._bucket}/{key}"
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return
            raise map_aws_error(exc, what) from exc
        except BotoCoreError as exc:
            raise map_aws_error(exc, what) from exc

    def get(self, key: str) -> bytes | None:
        """None when the object does not exist."""
        obj = self.read(key)
        return None if obj is None else obj.body

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

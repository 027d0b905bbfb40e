"""Amazon Resource Names by partition: build the ARNs the AWS adapters send. Pure.

The rules: a region belongs to exactly one partition, and every ARN of a resource in that
region starts with `arn:<partition>:` - `aws-cn` for the China regions (`cn-*`), `aws-us-gov`
for GovCloud (`us-gov-*`), the isolated partitions (`aws-iso`, `aws-iso-b`, `aws-iso-e`,
`aws-iso-f`) and the European Sovereign Cloud (`aws-eusc`) by their region prefixes, `aws` for
every other region. A resource id compared with what a service answers (an Inspector coverage
`resourceId`, an ECR `resourceArn`) must carry the partition of the resource's region, else it
never matches: hence one function, `partition()`, used by every builder here. The table follows
botocore's `partitions.json` (region regexes), kept here because the core imports no SDK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: (region prefix, partition), most specific first: `us-gov-`, `us-iso-` and `us-isob-` before `us-`.
PARTITIONS: tuple[tuple[str, str], ...] = (
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
    ("eusc-", "aws-eusc"),
)
DEFAULT_PARTITION = "aws"
_REGION_RE = re.compile(r"^[a-z]{2,4}(?:-[a-z]+)+-\d{1,2}$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")


def partition(region: str) -> str:
    """The partition of `region` (`cn-north-1` -> `aws-cn`); ValueError for a string that is no region."""
    if not _REGION_RE.fullmatch(region):
        raise ValueError(f"region {region[:100]!r} is not a region name (like eu-west-1)")
    for prefix, name in PARTITIONS:
        if region.startswith(prefix):
            return name
    return DEFAULT_PARTITION


@dataclass(frozen=True)
class Arn:
    """The six fields of `arn:partition:service:region:account:resource`."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def build_arn(service: str, region: str, account: str, resource: str) -> str:
    """The ARN of `resource` in `region`, in that region's partition."""
    if not _ACCOUNT_RE.fullmatch(account):
        raise ValueError(f"account {account[:100]!r} is not a 12-digit AWS account id")
    if not resource:
        raise ValueError("resource is empty")
    return str(Arn(partition(region), service, region, account, resource))


def ecr_repository_arn(region: str, account: str, repository: str) -> str:
    """`arn:<partition>:ecr:<region>:<account>:repository/<name>` (ListTagsForResource)."""
    return build_arn("ecr", region, account, f"repository/{repository}")


def ecr_image_arn(region: str, account: str, repository: str, digest: str) -> str:
    """The image ARN Inspector uses as a coverage `resourceId`: the repository ARN, then the digest."""
    return f"{ecr_repository_arn(region, account, repository)}/{digest}"


def account_of_role(role_arn: str) -> str:
    """The account ID of `arn:aws:iam::<account>:role/<name>` ("" when it is not such an ARN)."""
    parts = role_arn.split(":", 5)
    return parts[4] if len(parts) == 6 and parts[2] == "iam" else ""

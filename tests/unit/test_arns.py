"""core/arns.py: the partition of every kind of region, ARNs built in it."""

from __future__ import annotations

import pytest

from ecs_scan_operator.core.arns import (
    build_arn,
    ecr_image_arn,
    ecr_repository_arn,
    partition,
)
from ecs_scan_operator.core.images import parse_image

ACCOUNT = "123456789012"
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us-east-1", "aws"),
        ("eu-west-1", "aws"),
        ("ap-southeast-5", "aws"),
        ("il-central-1", "aws"),
        ("mx-central-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-gov-east-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
        ("us-isof-south-1", "aws-iso-f"),
        ("eu-isoe-west-1", "aws-iso-e"),
        ("eusc-de-east-1", "aws-eusc"),
    ],
)
def test_partition_of_region(region: str, expected: str) -> None:
    assert partition(region) == expected
    assert ecr_repository_arn(region, ACCOUNT, "team/app") == (
        f"arn:{expected}:ecr:{region}:{ACCOUNT}:repository/team/app"
    )
    assert ecr_image_arn(region, ACCOUNT, "team/app", DIGEST) == (
        f"arn:{expected}:ecr:{region}:{ACCOUNT}:repository/team/app/{DIGEST}"
    )


def test_partition_agrees_with_botocore() -> None:
    """The pure table matches botocore's partitions.json for every region botocore knows."""
    import botocore.session

    session = botocore.session.get_session()
    checked = 0
    for part in session.get_available_partitions():
        for region in session.get_available_regions("ecr", partition_name=part):
            assert partition(region) == part, region
            checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    ("image", "arn_prefix"),
    [
        (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/app:1", "arn:aws:ecr:eu-west-1:"),
        (f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/app:1", "arn:aws-cn:ecr:cn-north-1:"),
        (f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app:1", "arn:aws-us-gov:ecr:us-gov-west-1:"),
        (f"{ACCOUNT}.dkr.ecr.us-gov-east-1.amazonaws.com/app:1", "arn:aws-us-gov:ecr:us-gov-east-1:"),
    ],
)
def test_every_host_image_parsing_accepts_gets_its_partition(image: str, arn_prefix: str) -> None:
    ref = parse_image(image)
    assert ref.region and ref.account
    assert ecr_repository_arn(ref.region, ref.account, ref.repository).startswith(arn_prefix)


@pytest.mark.parametrize(
    ("region", "account", "resource", "reason"),
    [
        ("", ACCOUNT, "repository/x", "not a region name"),
        ("eu-west", ACCOUNT, "repository/x", "not a region name"),
        ("EU-WEST-1", ACCOUNT, "repository/x", "not a region name"),
        ("eu-west-1\n", ACCOUNT, "repository/x", "not a region name"),
        ("eu-west-1", "12345", "repository/x", "12-digit"),
        ("eu-west-1", "", "repository/x", "12-digit"),
        ("eu-west-1", ACCOUNT, "", "resource is empty"),
    ],
)
def test_build_refuses_bad_parts(region: str, account: str, resource: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        build_arn("ecr", region, account, resource)

"""inspector2 GetConfiguration (the ECR re-scan window, CoverageAtRisk) checked with botocore's Stubber.

moto has no inspector2 GetConfiguration, so the request is validated against the service model by
the Stubber and the answers below use the model's shape and enum values (`rescanDurationState`:
`rescanDuration` LIFETIME | DAYS_n, `pullDateRescanDuration`, `pullDateRescanMode`). What is
proven: one call per registry (account, region) and run whatever the number of images, none under
BASIC scanning, every answer shape read (the fields missing too), and failures mapped to ScanError
naming the operation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from ecs_scan_operator.adapters.scanning import RegistryFindingsSource
from ecs_scan_operator.core.coverage import RescanWindow
from ecs_scan_operator.errors import ScanError
from tests.integration.test_aws_stubbed import ACCOUNT, REGION, Stubs

pytestmark = pytest.mark.integration


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Stubs:
    return Stubs(monkeypatch)


def _scan_type(stubs: Stubs, kind: str) -> None:
    assert stubs.clients.registry("ecr", REGION) is not None
    stubs.stub("ecr").add_response(
        "get_registry_scanning_configuration",
        {"registryId": ACCOUNT, "scanningConfiguration": {"scanType": kind, "rules": []}},
        {},
    )


def _inspector(stubs: Stubs) -> Stubber:
    assert stubs.clients.registry("inspector2", REGION) is not None
    return stubs.stub("inspector2")


@pytest.mark.parametrize(
    ("state", "window"),
    [
        (
            {
                "rescanDuration": "DAYS_30",
                "pullDateRescanDuration": "DAYS_14",
                "pullDateRescanMode": "LAST_PULL_DATE",
                "status": "SUCCESS",
                "updatedAt": datetime(2025, 1, 1, tzinfo=UTC),
            },
            RescanWindow(ACCOUNT, REGION, "DAYS_30", "DAYS_14", "LAST_PULL_DATE"),
        ),
        ({"rescanDuration": "LIFETIME"}, RescanWindow(ACCOUNT, REGION, "LIFETIME")),
        (
            {
                "rescanDuration": "DAYS_180",
                "pullDateRescanDuration": "DAYS_90",
                "pullDateRescanMode": "LAST_IN_USE_AT",
            },
            RescanWindow(ACCOUNT, REGION, "DAYS_180", "DAYS_90", "LAST_IN_USE_AT"),
        ),
        (None, RescanWindow(ACCOUNT, REGION)),  # no ecrConfiguration in the answer
    ],
)
def test_one_call_per_registry_whatever_the_images(
    stubs: Stubs, state: dict[str, Any] | None, window: RescanWindow
) -> None:
    _scan_type(stubs, "ENHANCED")
    answer: dict[str, Any] = {} if state is None else {"ecrConfiguration": {"rescanDurationState": state}}
    _inspector(stubs).add_response("get_configuration", answer, {})  # no accountId: the registry's own
    source = RegistryFindingsSource(stubs.clients)
    for _ in range(3):  # asked for many images of the registry: still one call
        assert source.rescan_window(ACCOUNT, REGION) == window
    stubs.assert_done()


def test_basic_scanning_has_no_window_and_asks_nothing(stubs: Stubs) -> None:
    _scan_type(stubs, "BASIC")
    source = RegistryFindingsSource(stubs.clients)
    assert source.rescan_window(ACCOUNT, REGION) is None
    assert source.rescan_window(ACCOUNT, REGION) is None
    stubs.assert_done()  # no inspector2 client call at all


@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException", "InternalServerException"])
def test_failures_are_scan_errors_naming_the_call(stubs: Stubs, code: str) -> None:
    _scan_type(stubs, "ENHANCED")
    _inspector(stubs).add_client_error("get_configuration", service_error_code=code, http_status_code=400)
    with pytest.raises(ScanError) as err:
        RegistryFindingsSource(stubs.clients).rescan_window(ACCOUNT, REGION)
    assert "inspector2:GetConfiguration" in str(err.value)
    assert code in str(err.value.cause)

"""Runs share one botocore data loader: service models are parsed once per process, not per run."""

from __future__ import annotations

import threading

import pytest

from ecs_scan_operator.adapters.aws_session import AwsClients, core_session


def test_sessions_share_the_loader_and_its_parsed_models() -> None:
    first, second = core_session(), core_session()
    assert first is not second  # credentials and clients stay per session
    loader = first.get_component("data_loader")
    assert second.get_component("data_loader") is loader
    model = first.get_service_model("ecs")
    # the parsed description itself, not an equal copy (ServiceModel keeps it private)
    assert second.get_service_model("ecs")._service_description is model._service_description  # type: ignore[attr-defined]


def test_clients_of_two_runs_in_threads_use_the_shared_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    made: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            clients = AwsClients(role_arn="arn:aws:iam::111122223333:role/scan")
            made.append(clients.workload("ecs", "us-east-1").meta.service_model._service_description)
            made.append(clients.base("s3", "us-east-1").meta.service_model._service_description)
        except BaseException as exc:  # reported below
            errors.append(exc)

    run()  # the first run parses the models (runs starting at the same moment may each parse them once)
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(made) == 10
    assert len({id(m) for m in made}) == 2  # one ecs and one s3 model for all five runs


def test_clients_carry_no_docstring_objects_and_still_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each client's generated methods drop their help() text (~80 KiB a client; Fleet XL has 205)."""
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    clients = AwsClients(role_arn="arn:aws:iam::111122223333:role/scan")
    for client in (
        clients.workload("ecs", "us-east-1"),
        clients.registry("ecr", "eu-west-1"),
        clients.base("s3", "us-east-1"),
    ):
        methods = [getattr(client, name) for name in client.meta.method_to_api_mapping]
        assert methods and all(m.__doc__ is None for m in methods)
    ecs = clients.base("ecs", "us-east-1")
    with Stubber(ecs) as stub:
        stub.add_response("list_clusters", {"clusterArns": []}, {})
        assert ecs.list_clusters()["clusterArns"] == []
    # a session made elsewhere (boto3's default) keeps them: only ours are shaped
    import boto3

    plain = boto3.Session(region_name="us-east-1").client("ecs")
    assert plain.list_clusters.__doc__ is not None

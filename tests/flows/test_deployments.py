"""prefect.yaml: every deployment loads its flow, passes valid parameters and settings, and deploys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint

from flows.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def test_deployments_are_valid(config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    names = {d["name"]: d for d in config["deployments"]}
    assert set(names) == {"digitize-archive", "digitize-archive-gpu", "digitize-archive-dask"}
    assert {d["work_pool"]["name"] for d in names.values()} == {"registre-cpu", "registre-gpu"}
    for dep in names.values():
        assert dep["concurrency_limit"] == 1
        flow = load_flow_from_entrypoint(dep["entrypoint"])
        assert flow.name == "digitize-archive"
        params = flow.validate_parameters(dep["parameters"])
        assert params["src"].startswith("s3://") and params["out"].startswith("s3://")
        env = {k: v for k, v in dep["work_pool"]["job_variables"]["env"].items() if k.startswith("REGISTRE_")}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        Settings(**params["options"])  # raises on an unknown value
        for key in env:
            monkeypatch.delenv(key)
    cron = names["digitize-archive"]["schedules"][0]
    CronSchedule(cron=cron["cron"], timezone=cron["timezone"])
    assert names["digitize-archive-gpu"]["parameters"]["options"]["device"] == "cuda"


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_deploy_all_registers_the_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.testing.cli import invoke_and_assert

    monkeypatch.chdir(REPO)
    with get_client(sync_client=True) as client:
        for pool in ("registre-cpu", "registre-gpu"):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    invoke_and_assert(["--no-prompt", "deploy", "--all"], expected_code=0)
    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
    assert {"digitize-archive", "digitize-archive-gpu", "digitize-archive-dask"} <= set(deployments)
    nightly = deployments["digitize-archive"]
    assert nightly.work_pool_name == "registre-cpu" and nightly.parameters["options"]["chunk_size"] == 20
    assert nightly.schedules and nightly.schedules[0].schedule.cron == "0 2 * * *"
    assert deployments["digitize-archive-gpu"].work_pool_name == "registre-gpu"
    # One run at a time per deployment: a concurrency limit of one, held by the server.
    for name in ("digitize-archive", "digitize-archive-gpu", "digitize-archive-dask"):
        limit = deployments[name].global_concurrency_limit
        assert limit is not None and limit.limit == 1, name

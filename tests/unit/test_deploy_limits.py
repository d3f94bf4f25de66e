"""Deployed limits: every scheduled deployment one run at a time (parsed by Prefect's own prefect.yaml model), and
the settings check that refuses an http PUBLIC_BASE_URL in production or pools over the pooler's client limit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from orchestrator import deploy
from shared.errors import DeploymentConfigError
from shared.settings import Settings, check_deployed

REPO = Path(__file__).resolve().parents[2]


def test_every_scheduled_deployment_has_a_limit_of_one_that_cancels_the_newcomer():
    parsed = PrefectYamlModel.model_validate(yaml.safe_load((REPO / "prefect.yaml").read_text()))
    scheduled = [d for d in parsed.deployments if d.schedules]
    assert {d.name for d in scheduled} >= {"enrichment-daily", "batch-sweep", "outreach-run", "reply-recovery"}
    for d in scheduled:
        assert d.concurrency_limit is not None, f"{d.name} has a schedule and no concurrency_limit"
        limit = ConcurrencyLimitConfig.model_validate(d.concurrency_limit.model_dump())
        assert (limit.limit, limit.collision_strategy) == (1, ConcurrencyLimitStrategy.CANCEL_NEW), d.name


def test_outbound_deploy_passes_the_same_limit_to_prefect():
    specs = {s.name: s for s in deploy.load_specs()}
    extra = deploy._extra(specs["batch-sweep"])
    assert extra["concurrency_limit"] == ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW")
    assert "concurrency_limit" not in deploy._extra(specs["orchestrator-main"])  # one run per batch launch, many at once


@pytest.mark.parametrize("url", ["http://unsub.example.com", "ftp://x.example", "unsub.example.com"])
def test_a_deployed_process_refuses_a_public_base_url_that_is_not_https(url):
    for deployed in (Settings(public_base_url=url, modal_is_remote=True),
                     Settings(public_base_url=url, executor="modal")):
        with pytest.raises(DeploymentConfigError, match="PUBLIC_BASE_URL"):
            check_deployed(deployed)
    check_deployed(Settings(public_base_url=url))  # local runs: the default http://127.0.0.1:8000 and friends


@pytest.mark.parametrize("url", ["https://x--outbound-web-unsubscribe.modal.run", "http://localhost:8000",
                                 "http://127.0.0.1:8000"])
def test_https_and_localhost_pass_when_deployed(url):
    check_deployed(Settings(public_base_url=url, modal_is_remote=True))


def test_the_modal_env_marks_a_container_as_deployed(monkeypatch):
    monkeypatch.setenv("MODAL_IS_REMOTE", "1")
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://unsub.example.com")
    with pytest.raises(DeploymentConfigError, match="PUBLIC_BASE_URL"):
        check_deployed(Settings())


def test_pools_over_the_pooler_budget_are_refused_naming_the_settings():
    ok = Settings(db_pool_size=4, db_max_overflow=12, db_pooler_max_clients=200)
    check_deployed(ok, containers=4, concurrent_inputs=16)  # 4 x 16 = 64 <= 200
    with pytest.raises(DeploymentConfigError, match=r"13 containers .* = 208 connections exceed DB_POOLER_MAX_CLIENTS=200"):
        check_deployed(ok, containers=13)
    with pytest.raises(DeploymentConfigError, match="DB_POOL_SIZE"):
        check_deployed(Settings(db_pool_size=2, db_max_overflow=2), containers=1, concurrent_inputs=16)
    # The shipped web App's own figures fit the default budget.
    from modal_apps import web

    env = web.CONTAINER_ENV
    check_deployed(Settings(db_pool_size=int(env["DB_POOL_SIZE"]), db_max_overflow=int(env["DB_MAX_OVERFLOW"])),
                   containers=web.MAX_CONTAINERS, concurrent_inputs=web.MAX_INPUTS)

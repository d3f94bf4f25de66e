"""The chaos subset `make test` runs: every scenario of `make chaos`, small (short leases, small batches).

Real processes (`outbound batch run N`, killed with SIGKILL), real `pg_ctl restart -m immediate`
of the embedded Postgres, the sandbox provider behind a misbehaving proxy; invariants read back
from Postgres. The full-size run is `make chaos` (docs/reliability.md keeps its latest table).
"""

from __future__ import annotations

import os

import pytest

from chaos import scenarios
from chaos.harness import Stage, fast_settings
from shared.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@pytest.fixture(scope="module")
def stage(database_url, prefect_harness, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    from devkit import sandbox

    pg_data = None if os.environ.get("TEST_DATABASE_URL") else get_settings().data_dir / "pg"
    with sandbox.serve(latency_ms=5, hit_rate=0.7, seed=1) as sb:
        yield Stage(database_url, PREFECT_API_URL.value(), sb.url, tmp_path_factory.mktemp("chaos-logs"), pg_data,
                    fast_settings())


@pytest.mark.parametrize("scenario", scenarios.ALL, ids=[s.__name__ for s in scenarios.ALL])
def test_chaos_scenario_keeps_every_invariant(stage, scenario, request):
    if scenario is scenarios.postgres_restarts and stage.pg_data is None:
        pytest.skip("restarts need the embedded Postgres (TEST_DATABASE_URL points elsewhere)")
    outcome = scenario(stage, scenarios.FAST, request.node.callspec.id)
    print(f"{outcome.scenario}: {outcome.did} -> {outcome.found}")
    assert outcome.ok, "\n".join(outcome.failures()) + f"\nlogs in {stage.logs}"

"""Managed runs install only what Prefect's image lacks: the image pinned to the locked prefect, pip_packages = lock minus its closure."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from typer.testing import CliRunner

from orchestrator import deploy
from orchestrator.cli import app
from shared.errors import DeployError

REPO = Path(__file__).resolve().parents[2]


def _name(pin: str) -> str:
    return deploy._normalize(pin.split("==", 1)[0])


def test_prefect_yaml_pins_the_image_and_lists_exactly_what_it_lacks():
    parsed = PrefectYamlModel.model_validate(yaml.safe_load((REPO / "prefect.yaml").read_text()))
    managed = [d for d in parsed.deployments if d.work_pool and d.work_pool.name == deploy.MANAGED_POOL]
    assert managed, "no deployment on the managed pool"
    for d in managed:
        variables = d.work_pool.job_variables
        assert variables["image"] == "prefecthq/prefect:3.8.8-python3.11" == deploy.managed_image(), d.name
        assert variables["pip_packages"] == deploy.managed_packages(), f"{d.name}: run `outbound deploy-packages --write`"


def test_pip_packages_and_the_image_together_are_the_whole_lock_and_nothing_twice():
    lock = deploy.read_lock(deploy.LOCK_FILE)
    packages = {_name(p) for p in deploy.managed_packages()}
    in_image = deploy.image_distributions() & set(lock)
    assert packages | in_image == set(lock) and not packages & in_image
    assert {"prefect", "pydantic", "httpx", "sqlalchemy", "pyyaml"} <= in_image  # prefect's own closure
    assert {"modal", "psycopg2-binary", "tenacity", "pgserver"} <= packages  # ours alone
    assert len(packages) < len(lock) / 2, (len(packages), len(lock))


def test_a_lock_the_venv_does_not_match_is_refused(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(deploy.LOCK_FILE.read_text().replace("pydantic==", "pydantic==0.0.1.dev0+"))
    with pytest.raises(DeployError, match=r"installed pydantic .* is not the locked .*make venv"):
        deploy.image_distributions(lock)
    lock.write_text("modal==1.6.4\n")
    with pytest.raises(DeployError, match="does not pin prefect"):
        deploy.managed_image(lock)


def test_write_regenerates_a_stale_block_and_the_check_fails_until_then(tmp_path):
    copy = tmp_path / "prefect.yaml"
    shutil.copyfile(REPO / "prefect.yaml", copy)
    stale = copy.read_text().replace("          - modal==1.6.4\n", "")
    copy.write_text(stale)
    runner = CliRunner()
    checked = runner.invoke(app, ["deploy-packages", "--file", str(copy)])
    assert checked.exit_code == 1 and "outbound deploy-packages --write" in checked.output
    assert runner.invoke(app, ["deploy-packages", "--write", "--file", str(copy)]).exit_code == 0
    assert copy.read_text() == (REPO / "prefect.yaml").read_text()
    again = runner.invoke(app, ["deploy-packages", "--file", str(copy)])
    assert again.exit_code == 0 and f"pip_packages {len(deploy.managed_packages())} of the lock's" in again.output

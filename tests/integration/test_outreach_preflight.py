"""Issue 21.3: outreach checks its settings before it claims anything, and a run whose chunks all failed fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from modal_apps import outreach as outreach_app
from orchestrator.executor import ModalExecutor
from orchestrator.flows.outreach import outreach_pass, outreach_run, run_passes
from shared.engines.outreach import store
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.errors import OutreachConfigError, OutreachRunFailed
from shared.settings import environment
from tests import factories
from tests.email_sink import smtp_sink
from tests.modal_function import ModalFunction, RemoteCall

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, inside 9-17 UTC


def container(**container_env: str) -> ModalFunction:
    """The deployed `send_chunk` as Modal runs it (tests.modal_function: Modal's capacity and buffering):
    the App's real body in a container environment of its own (`container_env`, what its Secrets hold)."""
    def in_container(chunk):
        with environment(**container_env):
            return outreach_app.send_chunk.local(chunk)

    return ModalFunction(in_container, containers=1)


@pytest.fixture
def campaign(engine, env):
    env(OUTREACH_SECRET="test-secret", PUBLIC_BASE_URL="https://unsub.example.test")
    with smtp_sink() as (sink, port):
        with engine.begin() as conn:
            _setup(conn, port)
        yield sink


def _setup(conn, port: int) -> None:
    client = factories.client(conn, "acme")
    campaign = factories.campaign(conn, client, "seq", status="draft")
    factories.leads(conn, client, 6, campaign_id=campaign)
    mailboxes.add_mailbox(conn, client, from_address="rep@acme.test", smtp_host="127.0.0.1", smtp_port=port,
                      tls_mode="none", min_gap_seconds=0, jitter_seconds=0,
                      ramp_started_at=START - timedelta(days=30))
    # Always open: the Modal-shaped sends run on the real clock (Modal's send_chunk takes no `now`).
    sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
    sequences.set_step(conn, client, campaign, step=1, subject="Hi {{ first_name }}", body="Hello.")
    store.enroll(conn, client, campaign, now=START)
    assert campaigns.activate(conn, client, campaign) == []


def _claimed(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(text("SELECT (SELECT count(*) FROM batches), (SELECT count(*) FROM work_items), "
                                       "(SELECT count(*) FROM messages)")).one())


def test_the_flow_without_outreach_secret_fails_naming_it_with_nothing_claimed(engine, env, campaign,
                                                                                 prefect_harness):
    env(OUTREACH_SECRET="")
    with pytest.raises(OutreachConfigError, match="OUTREACH_SECRET is not set"):
        outreach_run(now=START)
    assert _claimed(engine) == (0, 0, 0) and campaign.messages == []


@pytest.mark.parametrize("setting, value, named", [
    ("PUBLIC_BASE_URL", "unsub.example.test", "PUBLIC_BASE_URL"),
    ("SMTP_TIMEOUT_SECONDS", "0", "SMTP_TIMEOUT_SECONDS"),
    ("OUTREACH_CHUNK_SIZE", "0", "OUTREACH_CHUNK_SIZE"),
    ("UNSUBSCRIBE_MAILTO", "not an address", "UNSUBSCRIBE_MAILTO")])
def test_each_bad_outreach_setting_is_named_before_anything_is_claimed(engine, env, campaign, setting, value, named):
    env(**{setting: value})
    with pytest.raises(OutreachConfigError, match=named):
        run_passes(outreach_pass.fn, now=START)
    assert _claimed(engine) == (0, 0, 0)


def test_modal_workers_without_the_secret_fail_the_preflight_in_their_own_environment(engine, env, campaign):
    """The orchestrator has the secret; the workers' `outreach` Secret does not: check_config says so first."""
    def container_check():
        with environment(OUTREACH_SECRET=""):
            return outreach_app.check_config.local()

    function = container(OUTREACH_SECRET="")
    check = RemoteCall(container_check)
    executor = ModalExecutor("outbound-outreach", "send_chunk", function=function, check=check)
    with pytest.raises(OutreachConfigError, match="OUTREACH_SECRET"):
        run_passes(outreach_pass.fn, now=START, executor=executor)
    assert check.calls == 1 and function.pulled == 0
    assert _claimed(engine) == (0, 0, 0)


def test_a_run_whose_chunks_all_failed_ends_failed_with_the_count(engine, env, campaign):
    """Workers whose DATABASE_URL is wrong (nothing the settings check can see): every chunk raises."""
    function = container(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    executor = ModalExecutor("outbound-outreach", "send_chunk", function=function,
                             check=RemoteCall(outreach_app.check_config.local))
    with pytest.raises(OutreachRunFailed, match=r"all 3 send chunks failed .*OperationalError"):
        run_passes(outreach_pass.fn, now=START, chunk_size=2, executor=executor)
    assert function.pulled == 3 and campaign.messages == []


def test_a_healthy_modal_shaped_run_sends_and_returns_its_summary(engine, env, campaign):
    function = container()
    executor = ModalExecutor("outbound-outreach", "send_chunk", function=function,
                             check=RemoteCall(outreach_app.check_config.local))
    summary = run_passes(outreach_pass.fn, now=START, chunk_size=2, executor=executor)
    assert summary["sent"] == 6 and summary["chunk_errors"] == 0 and len(campaign.messages) == 6

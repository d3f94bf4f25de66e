"""The Modal App file at its boundary: pinned like the project, secrets by name, retries and limits set."""

from __future__ import annotations

from pathlib import Path

import modal

from modal_apps import enrichment

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def test_image_packages_are_pinned_to_the_lock_file():
    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    locked = {norm(line.split("==")[0]): line.split("==")[1].strip() for line in LOCK.read_text().splitlines()
              if "==" in line}
    for pin in enrichment.RUNTIME_PACKAGES:
        name, version = pin.split("==")
        assert locked.get(norm(name)) == version, f"{pin} differs from requirements.lock ({locked.get(norm(name))})"


def test_app_and_function_names_match_what_the_executor_looks_up():
    from shared.settings import Settings

    s = Settings()
    assert enrichment.app.name == s.modal_app_name
    assert isinstance(getattr(enrichment, s.modal_function_name), modal.Function)


def test_function_declares_retries_timeout_and_container_cap():
    assert isinstance(enrichment.RETRIES, modal.Retries)
    assert enrichment.TIMEOUT_SECONDS == 15 * 60
    assert enrichment.MAX_CONTAINERS > 0
    assert isinstance(enrichment.postgres, modal.Secret) and isinstance(enrichment.providers, modal.Secret)


def test_outreach_apps_are_pinned_named_and_use_the_same_engine_and_app_factory():
    from modal_apps import outreach, web
    from shared.settings import Settings

    locked = {line.split("==")[0].lower(): line.split("==")[1].strip() for line in LOCK.read_text().splitlines()
              if "==" in line}
    for pin in outreach.RUNTIME_PACKAGES:
        name, version = pin.split("==")
        assert locked.get(name.lower().replace("_", "-")) == version, pin
    s = Settings()
    assert outreach.app.name == s.modal_outreach_app_name
    assert isinstance(getattr(outreach, s.modal_outreach_function_name), modal.Function)
    assert isinstance(outreach.smtp_passwords, modal.Secret)
    assert isinstance(web.unsubscribe, modal.Function)


def test_replies_app_is_pinned_named_and_runs_one_mailbox_per_call():
    from modal_apps import replies, web
    from shared.settings import Settings

    locked = {line.split("==")[0].lower(): line.split("==")[1].strip() for line in LOCK.read_text().splitlines()
              if "==" in line}
    for pin in replies.RUNTIME_PACKAGES:
        name, version = pin.split("==")
        assert locked.get(name.lower().replace("_", "-")) == version, pin
    s = Settings()
    assert replies.app.name == s.modal_replies_app_name
    assert isinstance(getattr(replies, s.modal_replies_function_name), modal.Function)
    assert isinstance(replies.smtp_passwords, modal.Secret) and isinstance(web.inbound_webhooks, modal.Secret)

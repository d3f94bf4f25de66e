"""Project settings: one pydantic-settings class, read lazily from the environment and `.env`."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import DeploymentConfigError

SECONDS = 1
MINUTES = 60 * SECONDS
HOURS = 60 * MINUTES
DAYS = 24 * HOURS

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# Containers per Modal worker function: the deploy (modal_apps/common.py) and the executor's claim window read it.
MODAL_MAX_CONTAINERS_DEFAULT = 20

class Settings(BaseSettings):
    """Everything configurable. Secrets have no defaults and are never logged (SecretStr)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # -- database -----------------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None,
        description="Postgres URL. Unset: the project starts its own embedded Postgres.",
    )
    data_dir: Path = Field(default=PROJECT_ROOT / ".data", description="Embedded Postgres lives here.")
    db_pool_size: int = 16
    db_max_overflow: int = 32
    db_pooler_max_clients: int = Field(
        default=200, description="Client connections the Postgres pooler accepts (Supavisor's limit for the project's "
                                 "compute size); the web App's containers x (DB_POOL_SIZE + DB_MAX_OVERFLOW) must fit.")

    # -- work-item state machine --------------------------------------------------------------
    lease_seconds: int = 5 * MINUTES
    queue_timeout_seconds: int = 10 * MINUTES
    max_attempts: int = 3
    # An orchestrator heartbeats the batch it runs this often; one silent for `batch_stale_seconds`
    # is dead (its batch may be taken over and is resumed by the sweep), and sooner when provably
    # gone (shared.liveness: its PID on this host, its database session). A launched batch nobody
    # started within `batch_launch_grace_seconds` is a lost launch.
    batch_heartbeat_seconds: float = 3 * SECONDS
    batch_stale_seconds: float = 20 * SECONDS
    batch_launch_grace_seconds: float = 3 * MINUTES

    # -- execution ----------------------------------------------------------------------------
    executor: Literal["local", "modal"] = "local"
    # Set to 1 by Modal in every container; with EXECUTOR=modal (the managed flows) it marks a deployed process.
    modal_is_remote: bool = False
    local_workers: int = Field(default=4, description="Chunks processed at once by the local executor.")
    lead_concurrency: int = Field(default=25, description="Leads of one chunk enriched at once.")
    provider_concurrency: int = Field(
        default=64,
        description="Calls in flight to one provider from one process, across all chunks (rate-limit guard).",
    )
    modal_app_name: str = "outbound-enrichment"
    modal_function_name: str = "enrich_chunk"
    # What the Modal workers can take at once; the Modal executor claims at most their product ahead.
    modal_max_containers: int = Field(default=MODAL_MAX_CONTAINERS_DEFAULT, ge=1,
                                      description="max_containers of each worker function (modal_apps/common.py).")
    modal_inputs_per_container: int = Field(default=1, ge=1,
                                            description="Chunks one worker container runs at once (1: no @modal.concurrent).")

    # -- providers ----------------------------------------------------------------------------
    provider_order: str = Field(
        default="auto",
        description="Comma-separated waterfall order (heuristics, sandbox, apollo, hunter, noop), or 'auto': "
                    "heuristics, then apollo if APOLLO_API_KEY is set, hunter if HUNTER_API_KEY is set, "
                    "sandbox if SANDBOX_URL is set.",
    )
    confidence_threshold: float = 0.7
    cache_ttl_seconds: int = 30 * DAYS
    provider_timeout_seconds: float = 10.0
    provider_max_retries: int = 2
    apollo_api_key: SecretStr | None = None
    apollo_base_url: str = "https://api.apollo.io"
    hunter_api_key: SecretStr | None = None
    hunter_base_url: str = "https://api.hunter.io"
    sandbox_url: str | None = Field(default=None, description="Base URL of the sandbox provider.")
    credit_wait_seconds: float = Field(
        default=120.0,
        description="How long a chunk waits for credits other attempts hold in flight before giving the "
                    "item back for a later attempt (never skipped no_credits while they may come back).",
    )
    sandbox_cost: int = 1
    apollo_cost: int = 1
    hunter_cost: int = 1

    # -- outreach -----------------------------------------------------------------------------
    outreach_secret: SecretStr | None = Field(
        default=None, description="HMAC key for unsubscribe tokens and VERP addresses (required to send).")
    message_id_secret: SecretStr | None = Field(
        default=None, description="HMAC key of our Message-IDs (only we can produce them, so a reply or bounce quoting "
                                  "one is trusted). Unset: a key derived from OUTREACH_SECRET. Keep it stable: a "
                                  "changed key only affects new sends (ids are stored per message).")
    public_base_url: str = Field(default="http://127.0.0.1:8000",
                                 description="Where the unsubscribe app is reached (https in production).")
    unsubscribe_mailto: str | None = Field(default=None, description="Address for mailto: unsubscribes.")
    smtp_timeout_seconds: float = 30.0
    outreach_chunk_size: int = 20
    modal_outreach_app_name: str = "outbound-outreach"
    modal_outreach_function_name: str = "send_chunk"

    # -- the operator console ---------------------------------------------------------------------
    console_secret: SecretStr | None = Field(
        default=None, description="Signs console session cookies and CSRF tokens (32+ random characters). "
                                  "Unset: the console answers 503 (`outbound serve` makes a throwaway one).")

    # -- replies and bounces -------------------------------------------------------------------
    standard_webhook_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks secret (whsec_…) for POST /webhooks/inbound.")
    mailgun_signing_key: SecretStr | None = Field(
        default=None, description="Mailgun HTTP webhook signing key for POST /webhooks/mailgun.")
    trusted_authserv_ids: str = Field(
        default="", description="Comma-separated authserv-ids (RFC 8601) of the services that receive our replies and "
                                "add Authentication-Results (e.g. mx.google.com). Only the topmost such header counts; "
                                "empty: Authentication-Results headers are not trusted at all.")
    dns_nameservers: str = Field(
        default="", description="Comma-separated resolvers (ip or ip:port) for `outbound mailboxes check`; empty: the "
                                "system's.")
    webhook_max_bytes: int = Field(default=25 * 1024 * 1024, description="Largest webhook body accepted (bytes).")
    inbound_raw_max_bytes: int = Field(default=1024 * 1024,
                                       description="Bytes of each received message kept in Postgres.")
    reply_folders: str = Field(default="INBOX", description="Comma-separated IMAP folders reply recovery reads.")
    imap_fetch_limit: int = 500  # messages per IMAP call; recovery loops until the folder is read
    soft_bounce_retries: int = Field(default=2, description="Soft bounces retried per lead before it counts as hard.")
    soft_bounce_retry_hours: float = 24.0  # a soft-bounced step is tried again this long after the bounce
    shield_hard_bounce_pct: float = Field(default=2.0, description="Pause above this hard-bounce rate (percent).")
    shield_complaint_pct: float = Field(default=0.3, description="Pause above this complaint rate (percent).")
    shield_min_sends: int = Field(default=20, description="The shield judges a rate only over at least this many sends.")
    shield_window_days: int = 7  # rolling window of the shield's rates
    modal_replies_app_name: str = "outbound-replies"
    modal_replies_function_name: str = "recover_mailbox"

    @property
    def deployed(self) -> bool:
        """A production process: inside a Modal container, or a flow run dispatching to Modal (EXECUTOR=modal)."""
        return self.modal_is_remote or self.executor == "modal"

    def message_id_key(self) -> str:
        """The key of our Message-IDs: MESSAGE_ID_SECRET, else one derived from OUTREACH_SECRET (domain-separated)."""
        if self.message_id_secret is not None and self.message_id_secret.get_secret_value():
            return self.message_id_secret.get_secret_value()
        if self.outreach_secret is None or not self.outreach_secret.get_secret_value():
            raise RuntimeError("MESSAGE_ID_SECRET (or OUTREACH_SECRET) is not set: Message-IDs cannot be signed")
        return hmac.new(self.outreach_secret.get_secret_value().encode(), b"message-id-key", hashlib.sha256).hexdigest()

    def authserv_ids(self) -> list[str]:
        return [a.strip().lower() for a in self.trusted_authserv_ids.split(",") if a.strip()]

    def reply_folder_list(self) -> list[str]:
        return [f.strip() for f in self.reply_folders.split(",") if f.strip()]


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def check_deployed(settings: Settings, *, containers: int | None = None,
                   concurrent_inputs: int | None = None) -> None:
    """Refuse, naming the settings, a deployed configuration that would break at run time.

    - PUBLIC_BASE_URL must be https once deployed (RFC 8058 one-click needs it), localhost excepted.
    - `containers` (a Modal App's max_containers) x (DB_POOL_SIZE + DB_MAX_OVERFLOW) must not exceed
      DB_POOLER_MAX_CLIENTS, and one container's pool must hold its `concurrent_inputs`.
    """
    from urllib.parse import urlsplit

    problems: list[str] = []
    if settings.deployed:
        url = urlsplit(settings.public_base_url)
        if url.scheme != "https" and url.hostname not in LOCAL_HOSTS:
            problems.append(f"PUBLIC_BASE_URL={settings.public_base_url!r} must be an https URL in production "
                            f"(one-click unsubscribe, RFC 8058); plain http is only for localhost")
    if containers is not None:
        per_container = settings.db_pool_size + settings.db_max_overflow
        if containers * per_container > settings.db_pooler_max_clients:
            problems.append(f"{containers} containers x (DB_POOL_SIZE={settings.db_pool_size} + DB_MAX_OVERFLOW="
                            f"{settings.db_max_overflow}) = {containers * per_container} connections exceed "
                            f"DB_POOLER_MAX_CLIENTS={settings.db_pooler_max_clients}")
        if concurrent_inputs is not None and concurrent_inputs > per_container:
            problems.append(f"{concurrent_inputs} concurrent requests per container need at least as many "
                            f"connections; DB_POOL_SIZE + DB_MAX_OVERFLOW is {per_container}")
    if problems:
        raise DeploymentConfigError("; ".join(problems))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables (and so settings) for a block; restore them after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    reset_settings()
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        reset_settings()

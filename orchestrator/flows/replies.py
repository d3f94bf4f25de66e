"""reply_recovery: every 6 hours, read each mailbox's new mail over IMAP and ingest what the webhooks missed.

One call per mailbox through the executor (local threads, or Modal's `recover_mailbox` with
`.map`); each call runs `shared.engines.replies.recovery.recover_mailbox`, the same store →
match → classify → act path as the webhooks. The run publishes a markdown artifact with, per
mailbox, how many replies, bounces and complaints it backfilled.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from orchestrator.executor import get_executor
from orchestrator.secrets import ensure_runtime_secrets
from orchestrator.tasks import DB_RETRIES
from shared.db import transaction
from shared.engines.replies import recovery
from shared.settings import get_settings


@task(**DB_RETRIES)
def recovery_targets() -> list[int]:
    with transaction() as conn:
        return recovery.recoverable_mailboxes(conn)


def summary_markdown(rows: list[dict[str, Any]], failed_calls: int) -> str:
    totals = {k: sum(r["backfilled"][k] for r in rows) for k in ("replies", "bounces", "complaints")}
    lines = ["# Reply recovery", "",
             f"Backfilled what the webhooks missed: **{totals['replies']} replies, {totals['bounces']} bounces, "
             f"{totals['complaints']} complaints** from {len(rows)} mailboxes.", "",
             "| mailbox | replies | bounces | complaints | fetched | already recorded | ours | unmatched | rescanned | error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["backfilled"]
        lines.append(f"| {r['address'] or r['mailbox_id']} | {b['replies']} | {b['bounces']} | {b['complaints']} | "
                     f"{r['fetched']} | {r['already_recorded']} | {r['ours']} | {r['unmatched']} | "
                     f"{', '.join(r['rescanned']) or '-'} | {r['error'] or '-'} |")
    if failed_calls:
        lines += ["", f"**{failed_calls} mailbox call(s) failed**; the next run retries them from their cursors."]
    return "\n".join(lines)


@flow(name="reply_recovery", description="Every 6 hours: IMAP safety net for missed reply/bounce webhooks.")
def reply_recovery() -> dict[str, Any]:
    ensure_runtime_secrets()
    settings = get_settings()
    logger = get_run_logger()
    ids = recovery_targets()
    executor = get_executor(settings, local_fn=recovery.recover_chunk,
                            modal_function=(settings.modal_replies_app_name, settings.modal_replies_function_name))
    rows: list[dict[str, Any]] = []
    failed = 0
    for result in executor.run([[m] for m in ids]):
        if isinstance(result, BaseException):
            failed += 1
            logger.error("a mailbox recovery call failed (its cursor is unchanged; next run retries): %r", result)
            continue
        rows.extend(result["mailboxes"])
    rows.sort(key=lambda r: r["mailbox_id"])
    for r in rows:
        logger.info("mailbox_id=%s %s backfilled %s (fetched %s, already recorded %s)%s", r["mailbox_id"],
                    r["address"], r["backfilled"], r["fetched"], r["already_recorded"],
                    f" error: {r['error']}" if r["error"] else "")
    markdown = summary_markdown(rows, failed)
    create_markdown_artifact(key="reply-recovery", markdown=markdown,
                             description="Replies, bounces and complaints backfilled per mailbox")
    totals = {k: sum(r["backfilled"][k] for r in rows) for k in ("replies", "bounces", "complaints")}
    return {"mailboxes": rows, "backfilled": totals, "failed_calls": failed, "markdown": markdown}

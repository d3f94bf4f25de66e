"""Lead import page: upload a client's lead CSV, map its columns, import it in the background, see every reject.

The same import as `outbound leads import` (`shared.engines.leads.importer`): the upload is
streamed to a private temporary folder (0700) under UPLOAD_MAX_BYTES, counted while it arrives
(`read_form`, the one cap of web/bodies.py, as the suppression import uses it), its header is read
and mapped as the import reads it (`peek_header`), the operator may name the field of any column
(`import_csv(column_map=...)`), then `import_csv` runs in a thread of its own and the page polls
`/imports/status` for the rows done (`on_progress`). The rejects file is the importer's own
(spreadsheet-safe, `shared.csvsafe`), served as it was written.

Jobs live in memory (`Jobs`, on `app.state.lead_imports`), each tied to the operator's session
that uploaded it: any other session, any viewer, gets 404 for its id. Limits: MAX_JOBS_PER_SESSION
per session (for a new upload, the oldest one not running is dropped with its files), MAX_JOBS in
all, MAX_RUNNING imports at once, JOB_TTL_SECONDS after which an idle or finished job and its files go.
They end with the process: a restart forgets them (the leads imported stay, their rejects file goes).
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import Engine

from shared import db
from shared.engines.clients import clients
from shared.engines.leads import importer
from shared.engines.outreach.suppression_list import client_name  # in the scope: None when not visible
from shared.engines.users.users import Principal
from shared.errors import LeadImportError, MissingEmailColumn, NotFound, OutboundError
from web.console.deps import (PREFIX, SECURITY_HEADERS, Conn, Operator, Page, Pages, PostedForm, SessionDep,
                              SignedInOperator, SignedInPage, Viewer, operator_only, posted_upload, redirect,
                              text_field, upload_form, upload_name)
from web.console.auth import Session
from web.state import Web

log = logging.getLogger(__name__)

UPLOAD_MAX_BYTES = 50 * 1024 * 1024  # a whole upload request; `outbound leads import` reads any size from disk
MAX_JOBS_PER_SESSION = 5
MAX_JOBS = 20  # across every session: each holds its upload (until imported) and its rejects file on disk
MAX_RUNNING = 2  # imports running at once; the rest wait for the operator to start them again
JOB_TTL_SECONDS = 2 * 3600
REJECTS_SHOWN = 200  # rejected lines listed on the page (the report keeps importer.REPORTED_ROWS, the file all)
CAMPAIGN_MAX_CHARS = 200
UPLOAD_FILE = "upload.csv"  # in the job's folder, beside the importer's rejects.csv
NOT_USED = "-"  # the column-map choice for a column not to import
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass
class Job:
    """One upload of one operator session: mapped, then imported once."""

    id: str
    owner: tuple[int, str]  # (user id, session id)
    client_id: int
    client_name: str
    campaign: str | None
    filename: str
    folder: Path  # private (0700): the upload, then the rejects file
    columns: importer.ColumnMap
    total: int  # estimated data rows (importer.estimate_rows)
    created: float = field(default_factory=time.monotonic)
    state: str = "mapping"  # mapping -> running -> done | failed
    rows_done: int = 0
    report: importer.ImportReport | None = None
    error: str | None = None
    finished: float | None = None

    @property
    def upload(self) -> Path:
        return self.folder / UPLOAD_FILE

    @property
    def status(self) -> dict[str, Any]:
        """What the page's poll reads."""
        return {"state": self.state, "rows_done": self.rows_done, "total": max(self.total, self.rows_done),
                "finished": self.state in ("done", "failed")}


class Jobs:
    """The app's import jobs, in memory, behind one lock (the import threads write their progress)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def get(self, owner: tuple[int, str], job_id: str | None) -> Job:
        """The session's job; NotFound for a malformed id, an unknown one, or another session's."""
        with self._lock:
            job = self._jobs.get(job_id or "") if _JOB_ID.fullmatch(job_id or "") else None
        if job is None or job.owner != owner:
            raise NotFound()
        return job

    def of(self, owner: tuple[int, str]) -> list[Job]:
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: -j.created)

    def add(self, job: Job) -> str | None:
        """Keep `job`, first dropping expired jobs and this session's oldest ones not running past
        MAX_JOBS_PER_SESSION (their files too); a refusal's reason when no slot is free."""
        with self._lock:
            now = time.monotonic()
            self._drop([j for j in self._jobs.values()
                        if j.state != "running" and now - (j.finished or j.created) > JOB_TTL_SECONDS])
            mine = sorted((j for j in self._jobs.values() if j.owner == job.owner), key=lambda j: j.created)
            idle = [j for j in mine if j.state != "running"]
            self._drop(idle[:max(0, len(mine) + 1 - MAX_JOBS_PER_SESSION)])
            if sum(j.owner == job.owner for j in self._jobs.values()) >= MAX_JOBS_PER_SESSION:
                return f"this session has {MAX_JOBS_PER_SESSION} imports running already"
            if len(self._jobs) >= MAX_JOBS:
                return f"the console holds {MAX_JOBS} imports already: try again once one is done"
            self._jobs[job.id] = job
            return None

    def _drop(self, jobs: list[Job]) -> None:
        for job in jobs:
            del self._jobs[job.id]
            shutil.rmtree(job.folder, ignore_errors=True)

    def start(self, job: Job, overrides: dict[int, str | None], engine: Engine) -> str | None:
        """Run the import in a thread of its own; a refusal's reason when it cannot start now."""
        with self._lock:
            if job.state != "mapping":
                return "this file was imported already: upload it again to import it again"
            if sum(j.state == "running" for j in self._jobs.values()) >= MAX_RUNNING:
                return f"{MAX_RUNNING} imports are running already: start this one when one of them is done"
            job.state = "running"
        threading.Thread(target=_run, args=(job, overrides, engine), name=f"lead-import-{job.id[:6]}",
                         daemon=True).start()
        return None


def _run(job: Job, overrides: dict[int, str | None], engine: Engine) -> None:
    """The CLI's import on the upload; the outcome (or the engine's error, in its words) lands on `job`."""
    def progress(rows: int) -> None:
        job.rows_done = rows

    try:
        job.report = importer.import_csv(job.upload, client_name=job.client_name, campaign_name=job.campaign,
                                         engine=engine, on_progress=progress,
                                         rejects_path=job.folder / "rejects.csv", column_map=overrides)
        job.state = "done"
    except OutboundError as exc:
        job.error, job.state = str(exc), "failed"
    except Exception as exc:  # the transaction rolled back: nothing was imported
        log.exception("lead import %s failed", job.id)
        job.error, job.state = f"the import failed ({type(exc).__name__}); nothing was imported", "failed"
    finally:
        job.finished = time.monotonic()
        job.upload.unlink(missing_ok=True)


# -- helpers -------------------------------------------------------------------------------------
def owner_of(who: Principal, session: Session) -> tuple[int, str]:
    return who.user_id, session.sid


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"


def _rejects_name(filename: str) -> str:
    """`<upload stem>.rejects.csv` in filename-safe ASCII: nothing for a header to trip on."""
    stem = re.sub(r"[^A-Za-z0-9_]+", "-", Path(filename).stem).strip("-_")[:60] or "leads"
    return f"{stem}.rejects.csv"


def _overrides(form: dict[str, Any], columns: importer.ColumnMap) -> dict[int, str | None]:
    """The posted field of each column (`col<index>`: a lead field, or NOT_USED); a column not posted keeps
    what its name maps to. A value that is neither is left in, for the importer to refuse in its words."""
    chosen = {i: text_field(form.get(f"col{i}")) for i in range(len(columns.header))}
    return {i: None if value == NOT_USED else value[:40] for i, value in chosen.items() if value}


def _field_of(columns: importer.ColumnMap) -> list[str]:
    """The field each column is read as (NOT_USED for an unknown column)."""
    fields = [NOT_USED] * len(columns.header)
    for name, indexes in columns.fields.items():
        for i in indexes:
            fields[i] = name
    return fields


_store_lock = threading.Lock()


def jobs_of(request: Request) -> Jobs:
    """The app's job store (made on first use, so the console module owns it entirely)."""
    state = request.app.state
    with _store_lock:
        if getattr(state, "lead_imports", None) is None:
            state.lead_imports = Jobs()
    return state.lead_imports


AllJobs = Annotated[Jobs, Depends(jobs_of)]
router = APIRouter(prefix=PREFIX)


def _render(view: Pages, conn: Any, jobs: Jobs, owner: tuple[int, str], job: Job | None, *, status: int = 200,
            **extra: Any) -> Response:
    if job is not None and client_name(conn, job.client_id) is None:
        raise NotFound()  # the client is gone, or not in this scope
    return view.page("imports.html", status=status, job=job, fields=importer.MAPPABLE_FIELDS, not_used=NOT_USED,
                     clients=clients.visible(conn) if view.who.is_operator else [],
                     recent=jobs.of(owner), upload_max=_size(UPLOAD_MAX_BYTES),
                     rejects_shown=REJECTS_SHOWN, mapped=_field_of(job.columns) if job else [], **extra)


@router.get("/imports")
def import_page(view: Page, conn: Conn, jobs: AllJobs, session: SessionDep, job: str | None = None,
                notice: str | None = None) -> Response:
    """The upload form (operators), or one of this session's jobs (`?job=`): its column map, progress or outcome."""
    owner = owner_of(view.who, session)
    found = jobs.get(owner, job) if job is not None else None
    return _render(view, conn, jobs, owner, found, notice=notice)


@router.get("/imports/status")
def import_status(who: Viewer, jobs: AllJobs, session: SessionDep, job: str | None = None) -> Response:
    """The job's progress, as JSON, for the page's poll."""
    return JSONResponse(jobs.get(owner_of(who, session), job).status, headers=SECURITY_HEADERS)


@router.get("/imports/rejects")
def import_rejects(who: Viewer, jobs: AllJobs, session: SessionDep, job: str | None = None) -> Response:
    """The importer's rejects file of a finished job (every row not imported, with its line and reason)."""
    found = jobs.get(owner_of(who, session), job)
    operator_only(who)
    path = found.report.rejects_path if found.report is not None else None
    if path is None or not path.is_file():
        raise NotFound()
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename=_rejects_name(found.filename),
                        headers=dict(SECURITY_HEADERS))


Upload = upload_form(lambda: UPLOAD_MAX_BYTES)


def _client_name(engine: Engine, who: Principal, client_id: int) -> str:
    with db.transaction(engine, role=who) as conn:
        name = client_name(conn, client_id)
    if name is None:
        raise NotFound()
    return name


def _stage(upload: Any, target: Path) -> tuple[importer.ColumnMap, int]:
    """Copy the upload to `target` and read its header and row estimate as the import will
    (LeadImportError, in the engine's words, when it cannot be read or stored)."""
    try:
        with target.open("xb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
    except OSError as exc:
        raise LeadImportError(f"the upload could not be stored: {exc.strerror or exc}") from None
    return importer.peek_header(target), importer.estimate_rows(target)


@router.post("/imports")
async def import_upload(form: Upload, who: SignedInOperator, view: SignedInPage, web: Web, jobs: AllJobs,
                        session: SessionDep) -> Response:
    """A CSV upload (`deps.upload_form`: operator, size, CSRF), staged for its column map; nothing is imported yet."""
    if form is None:
        return view.message(413, "Too large", f"Nothing imported: the file is larger than {_size(UPLOAD_MAX_BYTES)}; "
                                              "split it, or use `outbound leads import`.")
    parts = posted_upload(form)
    if isinstance(parts, str):
        return redirect("/imports", parts)
    client_id, upload = parts
    name = await run_in_threadpool(_client_name, web.engine(), who, client_id)
    campaign = importer.clean_name(text_field(form.get("campaign")))
    folder = Path(tempfile.mkdtemp(prefix="outbound-import-"))  # 0700: this process's user only
    try:
        columns, total = await run_in_threadpool(_stage, upload, folder / UPLOAD_FILE)
        job = Job(secrets.token_urlsafe(16), owner_of(who, session), client_id, name,
                  campaign[:CAMPAIGN_MAX_CHARS] if campaign else None, upload_name(upload.filename, "upload.csv"), folder,
                  columns, total)
        problem = jobs.add(job)
    except LeadImportError as exc:
        problem = str(exc)
    if problem is not None:
        shutil.rmtree(folder, ignore_errors=True)
        return redirect("/imports", f"Nothing imported: {problem}")
    return redirect(f"/imports?job={job.id}")


@router.post("/imports/start")
def import_start(form: PostedForm, who: Operator, conn: Conn, web: Web, jobs: AllJobs,
                 session: SessionDep) -> Response:
    """Start the import of a staged upload with the column map posted (checked by the importer's own rules)."""
    job = jobs.get(owner_of(who, session), text_field(form.get("job")))
    if client_name(conn, job.client_id) is None:
        raise NotFound()
    overrides = _overrides(form, job.columns)
    try:
        columns = importer.map_headers(job.columns.header, overrides)
        if not columns.email_indexes:
            raise MissingEmailColumn(job.columns.header)
    except LeadImportError as exc:
        return redirect(f"/imports?job={job.id}", f"not started: {exc}")
    problem = jobs.start(job, overrides, web.engine())
    return redirect(f"/imports?job={job.id}", f"not started: {problem}" if problem else None)

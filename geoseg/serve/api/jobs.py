"""Whole-scene jobs: submit, list, status, cancel, progress events, outputs."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter
from fastapi.responses import FileResponse, StreamingResponse

from ..jobs import FINAL, OUTPUT_KINDS
from ..jobs import Job as JobState
from ..schemas import Job, JobList, JobRequest
from ..state import ServerDep

KEEP_ALIVE_S = 15.0
POLL_S = 0.1

router = APIRouter(prefix="/api/jobs")


@router.post("", status_code=201, summary="Classify a whole scene (geoseg classify) as a job", response_model=Job)
def new_job(body: JobRequest, server: ServerDep) -> dict:
    return server.jobs.submit(server.registry.get(body.scene)).to_dict()


@router.get("", summary="Every job", response_model=JobList)
def list_jobs(server: ServerDep) -> dict:
    return {"jobs": [j.to_dict() for j in server.jobs.all()]}


@router.get("/{jid}", summary="A job's status and progress (patches done of total)", response_model=Job)
def get_job(jid: str, server: ServerDep) -> dict:
    return server.jobs.get(jid).to_dict()


@router.delete("/{jid}", summary="Cancel a job (nothing half-written is left)", response_model=Job)
def cancel_job(jid: str, server: ServerDep) -> dict:
    return server.jobs.cancel(jid).to_dict()


async def progress_events(job: Callable[[], JobState]) -> AsyncIterator[str]:
    """Server-sent ``progress`` events on every change of the job ``job()``
    returns (the same object, or a fresh snapshot of a job another process
    runs), then ``end``; a comment every :data:`KEEP_ALIVE_S` seconds without a change."""
    seen, idle = -1, 0.0
    while True:
        j = job()
        if j.version != seen:
            seen = j.version
            d = j.to_dict()
            yield f"event: progress\ndata: {json.dumps(d)}\n\n"
            if d["status"] in FINAL:
                yield f"event: end\ndata: {json.dumps(d)}\n\n"
                return
            idle = 0.0
        await asyncio.sleep(POLL_S)
        idle += POLL_S
        if idle >= KEEP_ALIVE_S:
            idle = 0.0
            yield ": keep-alive\n\n"


@router.get("/{jid}/events", summary="Server-sent progress events until the job ends",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(jid: str, server: ServerDep) -> StreamingResponse:
    server.jobs.get(jid)  # 404 before the stream starts
    return StreamingResponse(progress_events(lambda: server.jobs.get(jid)), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{jid}/outputs/{kind}", summary="Download an output of a finished job",
            description="kind: " + ", ".join(OUTPUT_KINDS), response_class=FileResponse)
def job_output(jid: str, kind: str, server: ServerDep) -> FileResponse:
    p = server.jobs.output(jid, kind)
    mt = mimetypes.guess_type(p)[0] or ("application/geopackage+sqlite3" if p.endswith(".gpkg")
                                        else "application/octet-stream")
    return FileResponse(p, media_type=mt, filename=os.path.basename(p))

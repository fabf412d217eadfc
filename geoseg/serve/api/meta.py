"""The page, liveness and the model contract."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ... import __version__
from ..schemas import Health, ModelAnswer
from ..state import ServerDep

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/api/health", summary="Liveness and cache counters", response_model=Health)
def health(server: ServerDep) -> dict:
    e = server.engine
    return {"status": "ok", "version": __version__, "scenes": len(server.registry.scenes),
            "cache": {**e.counters.to_dict(), "memory_blocks": len(e.mem), "memory_bytes": e.mem.nbytes,
                      "tiles": len(server.tiles), "not_modified": server.service.not_modified,
                      "draws_dropped": server.service.draw.dropped},
            "workers": e.workers, "event_loop_lag": server.loop_lag.summary()}


@router.get("/api/model", summary="The model contract: classes, colours, patch size", response_model=ModelAnswer)
def model_info(server: ServerDep) -> dict:
    c = server.model.contract
    return {
        "name": c.name, "file": os.path.basename(server.model.path), "sha256": server.model.sha256,
        "classes": [{"index": i, "name": n, "color": c.class_colors[i]} for i, n in enumerate(c.class_names)],
        "patch_size": c.patch_size, "stride": server.options.stride or c.patch_size, "bands": list(c.bands),
        "training_resolution_m": c.training_resolution_m, "min_valid_fraction": c.min_valid_fraction,
    }

"""Request bodies and answers of the ``geoseg serve`` API (pydantic models:
they check the bodies once at the entry and document both in ``/docs``).

A body model's own check raises ``ValueError`` with the one-line message the
client gets (a 422, see :mod:`geoseg.serve.errors`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _object(data: Any, expected: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"request body: expected {expected}")
    return data


# --- request bodies ---------------------------------------------------------------------------------
class SceneSource(BaseModel):
    """A scene to serve: a path under one of the server's folders, or an
    http(s) URL to download (size-limited; see ``--allow-url-prefix``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"path": "scene.tif"},
                                                              {"url": "https://host/scene.tif"}]})

    path: str | None = Field(None, description="a scene file under a served folder (relative: from the first)")
    url: str | None = Field(None, description="an http:// or https:// GeoTIFF URL")

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, data: Any) -> Any:
        expected = '{"path": "..."} or {"url": "..."}'
        d = _object(data, expected)
        if ("path" in d) == ("url" in d):
            raise ValueError(f"request body: expected {expected}")
        if "url" in d and not isinstance(d["url"], str):
            raise ValueError("url: expected a string")
        if "path" in d and not isinstance(d["path"], str):
            raise ValueError(f"{d['path']!r}: not a path; expected a scene file under one of the server's folders")
        return d


class JobRequest(BaseModel):
    """A whole-scene job: the id of a served scene."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"scene": "SCENE_ID"}]})

    scene: str = Field(description="a scene id of GET /api/scenes")

    @model_validator(mode="before")
    @classmethod
    def _scene(cls, data: Any) -> Any:
        d = _object(data, '{"scene": SCENE_ID}')
        if not isinstance(d.get("scene"), str):
            raise ValueError('request body: expected {"scene": SCENE_ID}')
        return d


# --- answers ----------------------------------------------------------------------------------------
class CacheCounters(BaseModel):
    memory_hits: int
    disk_hits: int
    computed: int
    joined: int = Field(description="requests that waited for a block another request was computing")
    patches: int
    dropped: int = Field(description="queued blocks dropped: no request waited for them any more")
    ingested: int = Field(description="blocks taken from finished whole-scene jobs")
    memory_blocks: int
    memory_bytes: int
    tiles: int = Field(description="rendered tiles in memory")
    not_modified: int = Field(description="tile requests answered 304 (If-None-Match)")
    draws_dropped: int = Field(description="queued tile drawings dropped: the client had gone")


class LoopLagSummary(BaseModel):
    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: int


class Health(BaseModel):
    status: str
    version: str
    scenes: int
    cache: CacheCounters
    workers: int = Field(description="threads computing blocks")
    event_loop_lag: LoopLagSummary = Field(
        description="how late this process's event loop wakes from a 20 ms sleep (the last two minutes): "
                    "what a cached tile waits for under load")


class ClassInfo(BaseModel):
    index: int
    name: str
    color: str


class ModelAnswer(BaseModel):
    name: str
    file: str
    sha256: str
    classes: list[ClassInfo]
    patch_size: int
    stride: int
    bands: list[str]
    training_resolution_m: int | float | None
    min_valid_fraction: int | float


class Grid(BaseModel):
    patch: int
    stride: int
    cells: list[int] = Field(description="rows, columns")
    transform: list[float] = Field(description="affine of the class grid (a, b, c, d, e, f)")
    block_cells: int


class Scene(BaseModel):
    id: str
    name: str
    bounds: list[float] = Field(description="west, south, east, north (WGS 84)")
    crs: str
    width: int
    height: int
    dtype: str
    pixel_size: list[float]
    uploaded: bool
    grid: Grid
    native_zoom: int


class SceneList(BaseModel):
    scenes: list[Scene]
    errors: list[str] = Field(description="scenes given at start that could not be served")


class TileJSON(BaseModel):
    """TileJSON 3.0.0."""

    tilejson: str
    name: str
    version: str
    scheme: str
    tiles: list[str]
    minzoom: int
    maxzoom: int
    bounds: list[float]
    center: list[int | float] = Field(description="longitude, latitude, zoom")
    attribution: str
    description: str


class PointAnswer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str | None = Field(alias="class", description="class name; null on nodata")
    class_index: int | None
    probabilities: dict[str, float] | None
    nodata: bool
    row: int
    col: int
    lon: float
    lat: float
    scene: str


class Job(BaseModel):
    id: str
    scene: str
    scene_name: str
    status: str = Field(description="queued, running, done, failed or cancelled")
    done: int = Field(description="patches done")
    total: int = Field(description="patches of the scene")
    progress: float
    error: str | None
    outputs: list[str]
    created: float
    started: float | None
    finished: float | None
    seconds: float | None


class JobList(BaseModel):
    jobs: list[Job]

"""geoseg: patch-wise landscape classification of large GeoTIFF scenes.

The runtime needs no TensorFlow: it reads GeoTIFF windows with rasterio,
classifies patches with onnxruntime in Dask tasks, and writes georeferenced
class rasters, probabilities, polygons, statistics and a quicklook.

Heavy modules are imported on first use, so ``import geoseg`` is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "classify_scene": "geoseg.pipeline",
    "ClassifyOptions": "geoseg.pipeline",
    "SceneResult": "geoseg.pipeline",
    "classify_many": "geoseg.batch",
    "RunResult": "geoseg.batch",
    "Runner": "geoseg.scheduling",
    "load_model": "geoseg.model",
    "ModelContract": "geoseg.contract",
    "Scaling": "geoseg.contract",
}

from .errors import GeosegError, InputError, ModelError, OutputError, OutputExistsError  # noqa: E402


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geoseg' has no attribute {name!r}")


__all__ = [
    "__version__", "GeosegError", "InputError", "ModelError", "OutputError",
    "OutputExistsError", *_LAZY,
]

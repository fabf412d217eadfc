"""The plugin object QGIS creates (``classFactory``): it registers the
``geoseg`` Processing provider.  ``initProcessing`` is QGIS's usual
pattern: called from ``initGui`` in the desktop, and directly where there
is no GUI (``classFactory(None).initProcessing()``, qgis_process)."""

from __future__ import annotations

from qgis.core import QgsApplication

from .provider import GeosegProvider


class GeosegPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802
        if self.provider is None:
            self.provider = GeosegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

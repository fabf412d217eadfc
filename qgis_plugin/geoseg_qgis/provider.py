"""The ``geoseg`` Processing provider: the algorithms and the setting that
names the geoseg program."""

from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from . import runner
from .algorithms import ALGORITHMS

ICON = os.path.join(os.path.dirname(__file__), "icon.svg")


class GeosegProvider(QgsProcessingProvider):
    def id(self):
        return "geoseg"

    def name(self):
        return "geoseg"

    def longName(self):  # noqa: N802
        return "geoseg: landscape classes of satellite scenes (ONNX models)"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802
        return ICON

    def load(self):
        from processing.core.ProcessingConfig import ProcessingConfig, Setting

        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(Setting(
            self.name(), runner.SETTING, "geoseg executable (the environment variable GEOSEG_EXECUTABLE wins; "
            "empty: geoseg on PATH)", "", valuetype=Setting.FILE))
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        from processing.core.ProcessingConfig import ProcessingConfig

        ProcessingConfig.removeSetting(runner.SETTING)

    def loadAlgorithms(self):  # noqa: N802
        for alg in ALGORITHMS:
            self.addAlgorithm(alg())

"""geoseg for QGIS: a Processing provider running the geoseg command line."""


def classFactory(iface):  # noqa: N802 - the name QGIS calls
    from .plugin import GeosegPlugin

    return GeosegPlugin(iface)

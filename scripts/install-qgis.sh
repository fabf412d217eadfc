#!/bin/sh
# Install QGIS's Python bindings (PyQGIS) for the QGIS integration test
# (tests/test_qgis.py) on Debian/Ubuntu.
#
# Idempotent: exits at once when /usr/bin/python3 already imports qgis.core.
# Never fails the build: when it cannot install (not Debian, not root and no
# sudo, no network), it says why and exits 0; the test then skips.
#
# What is needed, measured on Debian 12: python3-qgis (the bindings, which
# pull qgis-providers' libraries through libqgis-core) and qgis-providers
# (the GDAL/OGR data providers QgsRasterLayer/QgsVectorLayer use).
# gdal-bin and python3-gdal give GDAL's command-line tools and the
# GeoPackage validator used by the same test.

PY=/usr/bin/python3
PKGS="python3-qgis qgis-providers python3-gdal gdal-bin"

if [ -x "$PY" ] && QT_QPA_PLATFORM=offscreen "$PY" -c "import qgis.core" >/dev/null 2>&1; then
    echo "install-qgis: PyQGIS already importable with $PY; nothing to do"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-qgis: no apt-get (not Debian/Ubuntu); skipping, the QGIS test will skip"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-qgis: not root and no password-less sudo; skipping, the QGIS test will skip"
        exit 0
    fi
fi

start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -q >/dev/null; then
    echo "install-qgis: apt-get update failed (no network?); skipping, the QGIS test will skip"
    exit 0
fi
if ! $SUDO apt-get install -y -q --no-install-recommends $PKGS; then
    echo "install-qgis: apt-get install $PKGS failed; skipping, the QGIS test will skip"
    exit 0
fi
if QT_QPA_PLATFORM=offscreen "$PY" -c "import qgis.core" >/dev/null 2>&1; then
    echo "install-qgis: installed $PKGS in $(( $(date +%s) - start )) s"
else
    echo "install-qgis: installed $PKGS but $PY cannot import qgis.core; the QGIS test will skip"
fi
exit 0

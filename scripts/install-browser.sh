#!/usr/bin/env bash
# Install Debian's chromium for the browser test of `geoseg serve`
# (tests/test_serve_browser.py drives it with Playwright for Python through
# executable_path=/usr/bin/chromium; Playwright's own browser download is not
# used).  Waits up to 10 min for a dpkg lock held by another install.
# Idempotent: does nothing when chromium is already there.  Never
# fails the caller: where it cannot install (no root, no apt, no network) it
# says why and exits 0, and the browser test then skips with that reason.
set -u

if command -v chromium >/dev/null 2>&1; then
    echo "install-browser: chromium already installed ($(chromium --version 2>/dev/null | head -n1))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get on this system; install chromium yourself (the browser test will skip)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-browser: not root and no password-less sudo; run 'apt-get install chromium' as root (the browser test will skip)"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1; then
    echo "install-browser: apt-get update failed (no network?); the browser test will skip"
    exit 0
fi
if ! $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null 2>&1; then
    echo "install-browser: apt-get install chromium failed; the browser test will skip"
    exit 0
fi
echo "install-browser: installed $(chromium --version 2>/dev/null | head -n1)"
exit 0

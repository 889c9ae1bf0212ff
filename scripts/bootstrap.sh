#!/usr/bin/env bash
# Install everything heritage needs, idempotently: Debian's PyQGIS, a .venv on Debian's
# Python 3.11 that also sees the system qgis package, and the pinned Python dependencies.
# Each step is skipped when what it installs is already there and unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

SYS_PY=/usr/bin/python3.11
VENV=.venv
STAMP="$VENV/.heritage-installed"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. PyQGIS from Debian (only Debian's interpreter can load it).
if ! "$SYS_PY" -c "import qgis.core, mock" >/dev/null 2>&1 || ! "$SYS_PY" -m venv --help >/dev/null 2>&1; then
    log "installing Debian's PyQGIS (python3-qgis), python3-mock and python3-venv"
    if [ "$(id -u)" -ne 0 ]; then
        log "this step needs root: run 'sudo apt-get install python3-qgis python3-mock python3-venv python3-matplotlib'"
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3-qgis python3-mock python3-venv python3-matplotlib >/dev/null
fi

# 1b. Debian libraries of the PDF report (WeasyPrint draws text with Pango and subsets
#     fonts with HarfBuzz) and pdftoppm (poppler-utils), which its test renders pages with.
pdf_libs_ok() {
    command -v pdftoppm >/dev/null 2>&1 \
        && ldconfig -p | grep -q "libpangoft2-1.0.so.0" \
        && ldconfig -p | grep -q "libharfbuzz-subset.so.0" \
        && fc-list 2>/dev/null | grep -qi "DejaVu Sans"
}
if ! pdf_libs_ok; then
    log "installing Pango, HarfBuzz-subset, DejaVu fonts and poppler-utils (PDF report)"
    if [ "$(id -u)" -ne 0 ]; then
        log "this step needs root: run 'sudo apt-get install libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils'"
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fontconfig \
        poppler-utils >/dev/null
fi

# 2. The virtual environment, on Debian's Python, seeing Debian's site-packages (qgis).
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV on $SYS_PY with --system-site-packages"
    "$SYS_PY" -m venv --system-site-packages "$VENV"
fi

# 3. Pinned dependencies. requirements.lock is the full resolved set, installed with
#    --no-deps so that grad-cam cannot pull opencv-python next to opencv-python-headless.
want=$(cat requirements.lock requirements-dev.lock pyproject.toml | sha256sum | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    log "installing pinned Python dependencies into $VENV (first time: a few minutes)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
        -r requirements.lock -r requirements-dev.lock 2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
        -e . 2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$VENV/bin/python" -c "import torch, torchvision, pytorch_grad_cam, rasterio, geopandas, exifread, jinja2, weasyprint, mkdocs, heritage" \
        || { log "the Python environment is incomplete; see the messages above"; exit 1; }
    echo "$want" > "$STAMP"
fi

"""Serves plotly.js from the installed plotly package as static/vendor/plotly.min.js.

The file ships inside the plotly wheel, so it is always the version the Python side builds
figures for, and nothing is fetched from a CDN.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_STATIC_PATH = "vendor/plotly.min.js"


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=str(PLOTLY_JS.parent))

    def check(self, **kwargs):
        from django.core import checks

        if not PLOTLY_JS.exists():
            return [checks.Error(f"plotly.js not found at {PLOTLY_JS}", id="config.E010")]
        return []

    def find(self, path, find_all=False, **kwargs):
        if path == PLOTLY_STATIC_PATH:
            return [str(PLOTLY_JS)] if find_all else str(PLOTLY_JS)
        return []

    def list(self, ignore_patterns):
        # collectstatic copies (storage-relative path, storage); we rename it under vendor/.
        yield PLOTLY_JS.name, _RenamingStorage(location=str(PLOTLY_JS.parent))


class _RenamingStorage(FileSystemStorage):
    prefix = "vendor"

"""Settings of the web server the `pageweight` benchmark measures: the bench's settings, with static files
served either as production serves them now or as they were served before (PERFPILOT_BENCH_STATIC).

- "now": collectstatic's output (bench/pageweight.py runs it into PERFPILOT_BENCH_STATIC_ROOT) through
  whitenoise's CompressedManifestStaticFilesStorage, as `make run` serves it: content-hashed names, gzip,
  a long cache, and the basic plotly.js bundle.
- "before": the earlier setup: plain names from the source folders, no compression (of static files or
  pages), max-age 60, and the full plotly.js bundle of the plotly wheel (4.8 MB) as vendor/plotly.min.js,
  found first in PERFPILOT_BENCH_STATIC_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

from config.settings_test import *  # noqa: F403
from config.settings_test import MIDDLEWARE, STATICFILES_DIRS, STORAGES

if os.environ["PERFPILOT_BENCH_STATIC"] == "now":
    STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
    STATIC_ROOT = Path(os.environ["PERFPILOT_BENCH_STATIC_ROOT"])
    WHITENOISE_USE_FINDERS = False
    WHITENOISE_AUTOREFRESH = False
else:
    STATICFILES_DIRS = [Path(os.environ["PERFPILOT_BENCH_STATIC_DIR"]), *STATICFILES_DIRS]
    MIDDLEWARE = [name for name in MIDDLEWARE if name != "core.compression.PageGZipMiddleware"]

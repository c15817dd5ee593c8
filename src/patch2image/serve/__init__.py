"""``patch2image serve``: a local web page (and HTTP API) to segment photographs without a terminal.

Start it with ``patch2image serve`` or :func:`run_server`; see docs/serve.md.
"""

from patch2image.serve.app import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_MEGAPIXELS,
    MAX_UPLOAD_BYTES,
    ServeState,
    create_app,
    run_server,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_MEGAPIXELS",
    "MAX_UPLOAD_BYTES",
    "ServeState",
    "create_app",
    "run_server",
]

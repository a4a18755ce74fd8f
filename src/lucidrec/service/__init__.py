"""The HTTP service: FastAPI app, SQLite feedback store, API keys, rate limit and the web page.

Needs the ``serve`` extra (fastapi, uvicorn, prometheus-client); never imports torch. Names are imported
lazily so that ``lucidrec --help`` (which registers ``serve``) works without the extra installed.
"""

from __future__ import annotations

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str):
    if name in __all__:
        from lucidrec.service import app

        return getattr(app, name)
    raise AttributeError(name)

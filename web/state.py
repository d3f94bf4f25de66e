"""What the whole app shares, kept on `app.state.web` and handed to routes as FastAPI dependencies.

`create_app` builds one `WebState` (the engine, the unsubscribe secret, the Jinja2 templates);
routes ask for it (`Web`) or for the settings (`SettingsDep`, read per request, as the environment
may change under tests). Templates are autoescaped, and live in web/console/templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine

from shared.db import get_engine
from shared.settings import Settings, get_settings

TEMPLATES = Path(__file__).resolve().parent / "console" / "templates"


@dataclass(frozen=True)
class WebState:
    given_engine: Engine | None
    given_secret: str | None
    templates: Environment

    def engine(self) -> Engine:
        return self.given_engine or get_engine()

    def outreach_secret(self) -> str:
        value = self.given_secret or (s.get_secret_value() if (s := get_settings().outreach_secret) else "")
        if not value:
            raise RuntimeError("OUTREACH_SECRET is not set")
        return value


def templates() -> Environment:
    """The app's one Jinja2 environment: autoescaped (strings too), with the `dt` and `urlq` filters."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True,
                      default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    env.filters["dt"] = _dt
    env.filters["urlq"] = lambda v: quote(str(v), safe="")
    return env


def _dt(value: Any) -> str:
    if value is None:
        return ""
    try:
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except AttributeError:
        return str(value)


async def web_state(request: Request) -> WebState:
    return request.app.state.web


Web = Annotated[WebState, Depends(web_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

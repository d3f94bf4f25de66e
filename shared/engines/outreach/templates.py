"""Step templates: Jinja2 in a sandbox, strict about missing variables, dry-rendered before launch.

`meta.find_undeclared_variables` over-reports (`|default`, `{% if %}`), so activation renders
every enrolled lead for every step and catches `UndefinedError`: the report names the lead, the
step and the variable, e.g. `lead 12 ann@x.com: step 2 needs {{ company_name }}`. The console's
sequence editor also renders with `Marking`: the same sandbox, but each undefined variable is left
in place and named, so its preview can underline every one (the strict render still decides).

Rendered output is capped (RENDER_MAX_CHARS per subject or body, RenderTooLarge naming the step):
the output is streamed and counted while it is produced, and the sandbox intercepts `*`, `+` and
`**` so `{{ 'a' * 10**8 }}` is refused before the 100 MB string exists.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from shared.errors import RenderTooLarge, TemplateProblem

# What a template may use about a lead (the lead's own columns, plus enrichment under `enrichment`).
LEAD_VARIABLES = ("email", "first_name", "last_name", "title", "company_name", "company_domain", "phone",
                  "country", "linkedin_url")

RENDER_MAX_CHARS = 100_000  # an email body is a few kB; more is a template bug or an attack
_TOO_LARGE = f"the template renders more than {RENDER_MAX_CHARS:,} characters"
_POWER_MAX_BITS = 4096  # `10**8` is fine, `10**10**10` would not finish


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with `*`, `+` and `**` checked before they compute (an intercepted operator is
    never constant-folded at compile time either: `jinja2.nodes.BinExpr.as_const`)."""

    intercepted_binops = frozenset({"*", "+", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(times, int) and size * times > RENDER_MAX_CHARS:
                    raise RenderTooLarge(f"{_TOO_LARGE} (a repetition of {times:,})")
        elif operator == "+":
            a, b = _sized(left), _sized(right)
            if a is not None and b is not None and a + b > RENDER_MAX_CHARS:
                raise RenderTooLarge(_TOO_LARGE)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right > 0 and right * abs(left).bit_length() > _POWER_MAX_BITS:
                raise RenderTooLarge(f"{left} ** {right} is too large a number")
        return super().call_binop(context, operator, left, right)


def _render_capped(template: Template, ctx: Mapping[str, Any]) -> str:
    """The template's output, refused (RenderTooLarge) as soon as it passes RENDER_MAX_CHARS."""
    parts, size = [], 0
    for chunk in template.generate(ctx):
        size += len(chunk)
        if size > RENDER_MAX_CHARS:
            raise RenderTooLarge(_TOO_LARGE)
        parts.append(chunk)
    return "".join(parts)


_ENV = _BoundedSandbox(undefined=StrictUndefined, finalize=lambda v: "" if v is None else v,
                       autoescape=False, keep_trailing_newline=True)
_UNDEFINED_NAME = re.compile(r"'(?:[^']*' has no attribute '|)([A-Za-z_][A-Za-z0-9_]*)'")


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    """A template compiled once per source (a campaign's few steps render for every send; Templates are
    immutable and safe to share between threads)."""
    return _ENV.from_string(source)


@dataclass(frozen=True, slots=True)
class StepTemplate:
    step: int
    subject: str
    body: str
    variant: str | None = None  # an A/B variant's label ('B', ...); None: the step's own text


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str


def check_syntax(source: str, *, where: str) -> None:
    """Refuse a template that does not parse, naming where it is."""
    try:
        _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{where}: line {exc.lineno}: {exc.message}") from None


def lead_context(lead: Mapping[str, Any], sender: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The variables a template sees. A NULL column is present (renders as ""), an absent one is not."""
    ctx = {k: lead.get(k) for k in LEAD_VARIABLES if k in lead}
    ctx["enrichment"] = lead.get("enrichment") or {}
    # A missing value must be reported, not silently rendered empty: NULL columns are left out.
    ctx = {k: v for k, v in ctx.items() if v is not None}
    if sender:
        ctx["sender_name"] = sender.get("from_name") or ""
        ctx["sender_email"] = sender.get("from_address") or ""
    return ctx


def _render_in(compile_: Callable[[str], Template], template: StepTemplate, ctx: Mapping[str, Any]) -> Rendered:
    subject = _render_capped(compile_(template.subject), ctx)
    if "\r" in subject or "\n" in subject:
        subject = " ".join(subject.split())  # a header cannot carry a line break
    return Rendered(subject.strip(), _render_capped(compile_(template.body), ctx))


def render(template: StepTemplate, ctx: Mapping[str, Any]) -> Rendered:
    return _render_in(_compiled, template, ctx)


Segment = tuple[str, str | None]  # a run of rendered text, or (its placeholder text, the undefined variable's name)


class Marking:
    """`render` for the console's editor: every undefined variable is left in place and named, not raised.

    Each use of one renders as a token: a per-instance nonce around its number in `missing` (digits
    only, so a filter such as `upper` leaves it intact); `segments` cuts a rendered text at the tokens.
    Lead data cannot forge one: it does not know the nonce. Anything else that fails (`render`'s other
    refusals, arithmetic on a missing value) raises as in `render`: the strict render stays what decides.
    """

    def __init__(self) -> None:
        token = "\x00" + "".join(secrets.choice("0123456789") for _ in range(20)) + "\x00"
        used: list[str] = []

        def use(name: str | None) -> int:
            used.append(name or "?")
            return len(used) - 1

        class Marked(ChainableUndefined):
            __slots__ = ()

            def __str__(self) -> str:
                return f"{token}{use(self._undefined_name)}{token}"

            def __bool__(self) -> bool:  # `{% if missing %}`: the strict render refuses it, so it is listed
                use(self._undefined_name)
                return False

        self._token, self._used = token, used
        self._env = _ENV.overlay(undefined=Marked)

    @property
    def missing(self) -> list[str]:
        """Every undefined variable used so far, once each, in the order of first use."""
        return list(dict.fromkeys(self._used))

    def render(self, template: StepTemplate, ctx: Mapping[str, Any]) -> Rendered:
        return _render_in(self._env.from_string, template, ctx)

    def segments(self, rendered: str) -> list[Segment]:
        """The text in runs: (text, None), or (`{{ name }}`, name) where an undefined variable stood."""
        parts = rendered.split(self._token)
        out: list[Segment] = []
        for i, part in enumerate(parts):
            if i % 2 == 1 and i < len(parts) - 1 and part.isdigit() and int(part) < len(self._used):
                name = self._used[int(part)]
                out.append((f"{{{{ {name} }}}}", name))
            elif part:
                out.append((part, None))
        return out


def missing_variable(exc: UndefinedError) -> str:
    found = _UNDEFINED_NAME.search(str(exc.message or ""))
    return found.group(1) if found else str(exc.message)


def describe_problem(exc: Exception, step: int, variant: str | None = None) -> str:
    """Why step `step` (its variant `variant`, if any) did not render, as the activation report and the console's
    preview say it."""
    where = f"step {step}" if variant is None else f"step {step} variant {variant}"
    if isinstance(exc, UndefinedError):
        return f"{where} needs {{{{ {missing_variable(exc)} }}}}"
    if isinstance(exc, RenderTooLarge):
        return f"{where}: {exc}"
    return f"{where}: {type(exc).__name__}: {exc}"


def render_step(template: StepTemplate, ctx: Mapping[str, Any]) -> Rendered:
    """`render`, but any failure (a missing variable, a sandbox refusal, a filter error) is a TemplateProblem."""
    try:
        return render(template, ctx)
    except Exception as exc:  # noqa: BLE001 - every render failure blocks this lead the same way
        raise TemplateProblem(describe_problem(exc, template.step, template.variant)) from None


def dry_render(leads: Iterable[Mapping[str, Any]], steps: Iterable[StepTemplate],
               sender: Mapping[str, Any] | None = None) -> list[str]:
    """Every (lead, step) that would fail to render, as one line each; empty means ready."""
    steps = list(steps)
    compiled = [(s, _compiled(s.subject), _compiled(s.body)) for s in steps]
    problems: list[str] = []
    for lead in leads:
        ctx = lead_context(lead, sender or {"from_name": "", "from_address": ""})
        for step, subject, body in compiled:
            try:
                _render_capped(subject, ctx)
                _render_capped(body, ctx)
            except Exception as exc:  # a sandbox refusal or a filter error is just as blocking as a missing variable
                problems.append(f"lead {lead['id']} {lead['email']}: {describe_problem(exc, step.step, step.variant)}")
    return problems

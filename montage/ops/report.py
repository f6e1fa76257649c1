"""Render reports from Jinja templates (``montage/ops/templates``); Jinja is imported only here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from montage.ops.manifest import Manifest

TEMPLATES = Path(__file__).parent / "templates"


def render(template: str, **context: Any) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(template).render(**context)


def summary_markdown(manifest: Manifest) -> str:
    return render("summary.md.j2", m=manifest)

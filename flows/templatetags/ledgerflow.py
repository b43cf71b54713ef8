import json

import markdown as markdown_lib
import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def markdown(text: str) -> str:
    """Render Markdown and sanitise the HTML: runbooks are user input."""
    html = markdown_lib.markdown(text or "", extensions=["fenced_code", "tables", "sane_lists"])
    return mark_safe(nh3.clean(html, link_rel="noopener noreferrer nofollow"))


@register.filter
def actor_name(actor: str) -> str:
    return actor.split(":", 1)[1] if ":" in actor else actor


@register.filter
def as_json(value) -> str:
    """Pretty JSON for input and output panels (escaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def duration(value) -> str:
    """A timedelta as people read it: 850 ms, 12.4 s, 3 min 5 s, 2 h 10 min."""
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


@register.filter
def get_item(mapping, key):
    """``mapping[key]`` in a template; None when absent or not a mapping."""
    return mapping.get(key) if isinstance(mapping, dict) else None

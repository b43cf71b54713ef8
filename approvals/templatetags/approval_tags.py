from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def is_scalar(value) -> bool:
    return not isinstance(value, dict | list)

import json

from django import forms

from runs.ground import plainjson

MAX_INPUT_CHARS = 200_000


def _not_json(name: str):
    raise ValueError(f"{name} is not a JSON number")


class JSONTextField(forms.CharField):
    """A JSON document typed into a textarea; errors say where it broke."""

    def __init__(self, *args, expect_object: bool = True, **kwargs):
        self.expect_object = expect_object
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 6, "class": "code"}))
        kwargs.setdefault("max_length", MAX_INPUT_CHARS)
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        text = super().to_python(value) or ""
        if not text.strip():
            return {}
        try:
            parsed = json.loads(text, parse_constant=_not_json)
        except (ValueError, RecursionError) as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        problem = plainjson.problem(parsed)
        if problem:
            raise forms.ValidationError(f"This JSON cannot be stored: {problem}.")
        if self.expect_object and not isinstance(parsed, dict):
            raise forms.ValidationError('Enter a JSON object, e.g. {"order_id": "A-1"}.')
        return parsed

    def prepare_value(self, value):
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value


class StartRunForm(forms.Form):
    input = JSONTextField(required=False, label="Trigger input (JSON)", initial="{}")


class DiscardForm(forms.Form):
    reason = forms.CharField(max_length=500)


class ReplayForm(forms.Form):
    edited_input = JSONTextField(required=False, label="Edited input (JSON, optional)")

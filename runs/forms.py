import json

from django import forms

MAX_INPUT_CHARS = 200_000


class JSONTextField(forms.CharField):
    """A JSON document typed into a textarea; errors say where it broke."""

    def __init__(self, *args, expect_object: bool = True, **kwargs):
        self.expect_object = expect_object
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 6, "class": "code"}))
        kwargs.setdefault("max_length", MAX_INPUT_CHARS)
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        text = super().to_python(value)
        if not text.strip():
            return {}
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
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

"""The manual start form, generated from the manual trigger's ``input_schema``.

Flat schemas (string, number, integer, boolean and enum properties) become
one input per property; anything else keeps the JSON textarea. Either way the
input is validated against the schema and errors are shown on their field.
"""

import json
from typing import Any

import jsonschema
from django import forms

from connectors.triggers.models import Binding
from runs.forms import StartRunForm
from runs.ground import plainjson

SIMPLE_TYPES = {"string", "number", "integer", "boolean"}


def input_schema(flow) -> dict:
    binding = Binding.objects.filter(flow=flow, kind="manual").first()
    schema = (binding.config.get("input_schema") if binding else None) or {}
    return schema if isinstance(schema, dict) else {}


def input_problems(flow, value: Any) -> dict[str, str]:
    """{field or "input": message} for each way ``value`` breaks the flow's
    manual input schema; empty when it fits (the API's start call)."""
    problems = _schema_errors(input_schema(flow), value)
    return {field or "input": message for field, message in problems}


def start_form_for(flow, data=None) -> "JSONStartForm | SchemaStartForm":
    schema = input_schema(flow)
    if _is_flat(schema):
        return SchemaStartForm(schema, data=data)
    return JSONStartForm(schema, data=data)


def _is_flat(schema: dict) -> bool:
    properties = schema.get("properties")
    if schema.get("type") not in (None, "object") or not isinstance(properties, dict):
        return False
    if not properties:
        return False
    return all(
        isinstance(spec, dict) and ("enum" in spec or spec.get("type") in SIMPLE_TYPES)
        for spec in properties.values()
    )


def _schema_errors(schema: dict, value: Any) -> list[tuple[str | None, str]]:
    """(field or None, message) for each way ``value`` breaks ``schema``."""
    if not schema:
        return []
    try:
        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    except jsonschema.SchemaError as exc:
        return [(None, f"the flow's input schema is invalid: {exc.message}")]
    found = []
    for error in errors[:20]:
        path = list(error.absolute_path)
        field = str(path[0]) if path else None
        if error.validator == "required" and not path:
            missing = error.message.split("'")[1] if "'" in error.message else None
            found.append((missing, "This field is required."))
        else:
            found.append((field, error.message))
    return found


class JSONStartForm(StartRunForm):
    """The JSON textarea, checked against the schema when there is one."""

    def __init__(self, schema: dict, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.schema = schema

    def clean(self):
        data = super().clean()
        if "input" in data:
            for field, message in _schema_errors(self.schema, data["input"]):
                self.add_error("input", f"{field}: {message}" if field else message)
        return data

    def run_input(self) -> Any:
        return self.cleaned_data["input"]


class SchemaStartForm(forms.Form):
    def __init__(self, schema: dict, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.schema = schema
        required = set(schema.get("required", []))
        for name, spec in schema["properties"].items():
            self.fields[name] = _field(spec, name in required)

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        for name in self.fields:
            problem = plainjson.problem(data.get(name))
            if problem:  # a number too large for the event log
                self.add_error(name, f"This value cannot be stored: {problem}.")
        if self.errors:
            return data
        for field, message in _schema_errors(self.schema, self.run_input()):
            self.add_error(field if field in self.fields else None, message)
        return data

    def run_input(self) -> dict:
        value = {}
        for name, field in self.fields.items():
            item = self.cleaned_data.get(name)
            if item in (None, "") and not isinstance(field, forms.BooleanField):
                continue  # left empty: absent from the input, not null
            value[name] = item
        return value


def _field(spec: dict, required: bool) -> forms.Field:
    common = {
        "required": required and spec.get("type") != "boolean",
        "label": spec.get("title") or None,
        "help_text": spec.get("description", ""),
    }
    if "enum" in spec:
        options = {json.dumps(option): option for option in spec["enum"]}
        return forms.TypedChoiceField(
            choices=[("", "—")] + [(key, str(value)) for key, value in options.items()],
            coerce=lambda key, options=options: options[key],
            empty_value=None,
            **common,
        )
    kind = spec.get("type")
    if kind == "integer":
        return forms.IntegerField(
            min_value=spec.get("minimum"), max_value=spec.get("maximum"), **common
        )
    if kind == "number":
        return forms.FloatField(
            min_value=spec.get("minimum"), max_value=spec.get("maximum"), **common
        )
    if kind == "boolean":
        return forms.BooleanField(**common)
    return forms.CharField(
        max_length=spec.get("maxLength"), min_length=spec.get("minLength"), strip=False, **common
    )


class BackfillForm(forms.Form):
    """A backfill's range and throttle. Times are UTC, whatever the
    schedule's time zone: a local time can be missing or twice on a
    daylight-saving day, a UTC instant cannot."""

    start = forms.CharField(
        label="Start (UTC)",
        max_length=40,
        help_text="The first fire time to consider, in UTC, e.g. 2026-05-01T00:00.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
    )
    end = forms.CharField(
        label="End (UTC)",
        max_length=40,
        help_text="The last fire time to consider, in UTC (inclusive).",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
    )
    max_in_flight = forms.IntegerField(
        label="Runs in flight at most",
        initial=5,
        help_text="How many of the backfill's runs may be running at once (1 to 50).",
    )

    def _instant(self, name: str):
        import datetime as dt

        text = self.cleaned_data[name].strip()
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise forms.ValidationError(
                f"“{text[:40]}” is not a date and time (YYYY-MM-DDTHH:MM, UTC)."
            ) from None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)

    def clean_start(self):
        return self._instant("start")

    def clean_end(self):
        return self._instant("end")

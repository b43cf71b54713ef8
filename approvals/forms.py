"""The business-calendar form: opening hours as a person writes them.
``approvals.calendars.calendar_save`` writes, recording the change."""

import datetime as dt

from django import forms
from django.contrib.auth.models import Group

from approvals import sla

HOURS_HELP = "One weekday per line: “mon 09:00-12:00 13:00-17:00”. A day not listed is closed."


def hours_to_text(opening_hours: dict) -> str:
    return "\n".join(
        f"{day} " + " ".join(f"{start}-{end}" for start, end in opening_hours[day])
        for day in sla.WEEKDAYS
        if opening_hours.get(day)
    )


def _parse_hours(text: str) -> dict:
    hours: dict[str, list[list[str]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        day, spans = words[0].lower(), words[1:]
        if not spans:
            raise forms.ValidationError(f"line {number}: give opening hours after {day}")
        for span in spans:
            start, _, end = span.partition("-")
            if not end:
                raise forms.ValidationError(f"line {number}: “{span}” is not like 09:00-17:00")
            hours.setdefault(day, []).append([start, end])
    return hours


class BusinessCalendarForm(forms.Form):
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"))
    time_zone = forms.CharField(max_length=64, initial="UTC", help_text="e.g. Europe/Berlin")
    opening_hours = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), help_text=HOURS_HELP)
    holidays = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One date per line, YYYY-MM-DD.",
    )

    def clean_holidays(self) -> list[str]:
        days = []
        for text in self.cleaned_data["holidays"].split():
            try:
                days.append(dt.date.fromisoformat(text).isoformat())
            except ValueError:
                raise forms.ValidationError(f"“{text}” is not a date (YYYY-MM-DD)") from None
        return sorted(set(days))

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            hours = _parse_hours(data["opening_hours"])
            sla.Calendar.from_spec(
                time_zone=data["time_zone"], opening_hours=hours, holidays=data["holidays"]
            )
        except (sla.CalendarError, ValueError) as exc:
            raise forms.ValidationError(str(exc)) from None
        except forms.ValidationError:
            raise
        data["opening_hours"] = hours
        return data

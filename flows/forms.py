from django import forms
from django.contrib.auth import get_user_model
from django.utils.text import slugify

from flows.models import Criticality, Flow, Kind, Team, alert_addresses, validate_alert_to
from runs.forms import JSONTextField

MAX_LIST_ITEMS = 20
# Path segments of the inventory's own pages; a flow slug may not take them.
RESERVED_SLUGS = {"new", "audit", "teams"}
MAX_ITEM_LENGTH = 60


class CommaListField(forms.CharField):
    """A comma-separated list of short labels, stored as a JSON list."""

    def to_python(self, value):
        text = super().to_python(value) or ""
        items = []
        for raw in text.split(","):
            item = raw.strip()
            if item and item not in items:
                items.append(item)
        return items

    def validate(self, value):
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        if len(value) > MAX_LIST_ITEMS:
            raise forms.ValidationError(f"At most {MAX_LIST_ITEMS} entries.")
        for item in value:
            if len(item) > MAX_ITEM_LENGTH:
                raise forms.ValidationError(
                    f"“{item[:20]}…” is longer than {MAX_ITEM_LENGTH} characters."
                )

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(value)
        return value


MAX_ALERT_ADDRESSES = 10


class EmailListField(forms.CharField):
    """Comma-separated email addresses, kept as one normalised text
    ("a@x.example, b@y.example"); each address is checked on its own, so
    the error names the one that is wrong."""

    def to_python(self, value):
        return alert_addresses(super().to_python(value) or "")

    def validate(self, value):
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        if len(value) > MAX_ALERT_ADDRESSES:
            raise forms.ValidationError(f"At most {MAX_ALERT_ADDRESSES} addresses.")
        validate_alert_to(", ".join(value))

    def run_validators(self, value):
        # The joined text must fit the column; each address was checked above.
        super().run_validators(", ".join(value))

    def clean(self, value):
        return ", ".join(super().clean(value))


class FlowForm(forms.Form):
    name = forms.CharField(max_length=150)
    slug = forms.SlugField(
        max_length=150,
        required=False,
        help_text="Used in URLs. Left blank, it is made from the name.",
    )
    kind = forms.ChoiceField(choices=Kind.choices, initial=Kind.LEDGERFLOW)
    external_platform = forms.CharField(
        max_length=100,
        required=False,
        help_text="For automations that run elsewhere: Zapier, a cron job on ops-1, …",
    )
    external_url = forms.URLField(required=False, assume_scheme="https", label="Link to it")
    purpose = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    owner = forms.ModelChoiceField(queryset=None, required=False)
    team = forms.ModelChoiceField(queryset=Team.objects.all(), required=False)
    criticality = forms.ChoiceField(choices=Criticality.choices, initial=Criticality.MEDIUM)
    runbook = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        help_text="Markdown. What an on-call person does when this automation misbehaves.",
    )
    failure_mode = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        label="Failure mode",
        help_text="What happens if this fails silently?",
    )
    alert_to = EmailListField(
        max_length=500,
        required=False,
        label="Alert to",
        help_text="Where this flow's failures are mailed, comma-separated. "
        "Blank: the owner's email address.",
    )
    review_cadence_days = forms.IntegerField(
        min_value=1, max_value=3650, initial=90, label="Review every (days)"
    )
    tags = CommaListField(required=False, help_text="Comma-separated.")
    external_systems = CommaListField(
        required=False, help_text="Systems it touches, comma-separated: Stripe, Salesforce, …"
    )
    version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, flow: Flow | None = None, **kwargs):
        self.flow = flow
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = (
            get_user_model().objects.filter(is_active=True).order_by("username")
        )
        if flow is not None and flow.owner is not None and not flow.owner.is_active:
            # Keep an inactive owner selectable so the form shows the truth.
            self.fields["owner"].queryset = (
                get_user_model().objects.filter(pk__in=[flow.owner_id])
                | self.fields["owner"].queryset
            )

    @classmethod
    def initial_for(cls, flow: Flow) -> dict:
        initial = {field: getattr(flow, field) for field in cls.base_fields if field != "version"}
        initial["owner"] = flow.owner_id
        initial["team"] = flow.team_id
        initial["version"] = flow.version
        return initial

    def clean(self):
        data = super().clean()
        if "name" in data and not data.get("slug"):
            data["slug"] = slugify(data["name"])[:150]
            if not data["slug"]:
                self.add_error("slug", "Could not make a slug from the name; enter one.")
        slug = data.get("slug")
        if slug in RESERVED_SLUGS:
            self.add_error("slug", f"“{slug}” is reserved; choose another slug.")
        elif slug:
            clash = Flow.objects.filter(slug=slug)
            if self.flow is not None:
                clash = clash.exclude(pk=self.flow.pk)
            if clash.exists():
                self.add_error("slug", f"The slug “{slug}” is already taken.")
        if data.get("kind") == Kind.EXTERNAL:
            if not data.get("external_platform"):
                self.add_error("external_platform", "Say where this automation runs (e.g. Zapier).")
            if not data.get("external_url"):
                self.add_error("external_url", "Link to the automation where it runs.")
        return data


class ReviewForm(forms.Form):
    note = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class OwnerForm(forms.Form):
    owner = forms.ModelChoiceField(queryset=None, required=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = (
            get_user_model().objects.filter(is_active=True).order_by("username")
        )


class TeamForm(forms.Form):
    """A plain form: ``flows.teams.team_save`` writes, recording the change."""

    name = forms.CharField(max_length=Team._meta.get_field("name").max_length)
    restricts_edits = forms.BooleanField(
        required=False, help_text="Only members (and admins) may edit this team's flows."
    )
    members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.order_by("username"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, team: Team | None = None, **kwargs):
        if team is not None:
            kwargs.setdefault(
                "initial",
                {
                    "name": team.name,
                    "restricts_edits": team.restricts_edits,
                    "members": list(team.members.all()),
                },
            )
        super().__init__(*args, **kwargs)


class GraphForm(forms.Form):
    graph = JSONTextField(widget=forms.Textarea(attrs={"rows": 24, "class": "code"}))
    note = forms.CharField(max_length=500, required=False, label="Version note")

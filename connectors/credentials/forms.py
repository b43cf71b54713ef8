"""The credential form: built from the type's fields. Secret fields are
write-only: never given an initial value, never rendered back, blank means
"keep what is set"."""

from django import forms
from django.contrib.auth import get_user_model

from connectors.credentials.models import Credential
from connectors.credentials.store import FieldSpec, specs
from connectors.outbound.allowed_hosts import HostPatternError, clean_patterns


def _field(spec: FieldSpec, credential: Credential | None) -> forms.Field:
    if spec.secret:
        is_set = credential is not None and spec.name in credential.secret_names
        return forms.CharField(
            label=spec.label,
            required=spec.required and not is_set,
            strip=False,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            help_text=(
                "set — leave blank to keep"
                if is_set
                else "write-only: once saved it is never shown again"
            ),
        )
    if spec.kind == "int":
        return forms.IntegerField(
            label=spec.label, required=spec.required, min_value=1, max_value=65535
        )
    if spec.kind == "bool":
        return forms.BooleanField(label=spec.label, required=False)
    return forms.CharField(label=spec.label, required=spec.required, max_length=500)


class CredentialForm(forms.Form):
    def __init__(self, *args, type_: str, credential: Credential | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.type = type_
        self.specs = specs(type_)
        if credential is None:
            self.fields["name"] = forms.CharField(
                max_length=100,
                help_text='Flows refer to it by this name (config "credential"); '
                "it cannot be changed later.",
            )
        else:
            self.fields["version"] = forms.IntegerField(widget=forms.HiddenInput)
        self.fields["owner"] = forms.ModelChoiceField(
            get_user_model().objects.filter(is_active=True).order_by("username"),
            required=False,
            help_text="Who to ask about this credential.",
        )
        for spec in self.specs:
            self.fields[spec.name] = _field(spec, credential)
        self.fields["allowed_hosts"] = forms.CharField(
            required=False,
            max_length=5000,
            widget=forms.Textarea(attrs={"rows": 3, "class": "code"}),
            help_text=(
                "Where this credential may be sent, one per line: api.example.com, "
                "*.example.com (its subdomains), 10.0.0.5:5432 (one port). Steps refuse "
                "to send it anywhere else; with none it goes nowhere."
            ),
        )

    def clean_allowed_hosts(self) -> list[str]:
        try:
            return clean_patterns(self.cleaned_data.get("allowed_hosts", ""))
        except HostPatternError as exc:
            raise forms.ValidationError(str(exc)) from None

    @classmethod
    def initial_for(cls, credential: Credential) -> dict:
        return {"owner": credential.owner_id, "version": credential.version, **credential.fields,
                "allowed_hosts": "\n".join(credential.allowed_hosts)}  # fmt: skip

    def plain_fields(self) -> dict:
        return {s.name: self.cleaned_data.get(s.name) for s in self.specs if not s.secret}

    def secret_fields(self) -> dict:
        return {s.name: self.cleaned_data.get(s.name) or "" for s in self.specs if s.secret}

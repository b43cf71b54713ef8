"""Credential pages. Secrets go in through a form and never come out: no page
renders, logs or returns a secret value."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from config.roles import role_required
from connectors.credentials import store as credentials
from connectors.credentials.forms import CredentialForm
from connectors.credentials.models import Credential, CredentialType

PERMISSION = "connectors.manage_credentials"


@role_required(PERMISSION)
def credential_list(request):
    rows = Credential.objects.select_related("owner").order_by("name")
    return render(request, "connectors/credentials.html", {"credentials": rows})


@role_required(PERMISSION)
def credential_create(request):
    type_ = request.POST.get("type") or request.GET.get("type", "")
    if type_ not in credentials.TYPE_FIELDS:
        return render(request, "connectors/credential_type.html", {"types": CredentialType.choices})
    form = CredentialForm(request.POST or None, type_=type_, initial={"owner": request.user.pk})
    if request.method == "POST" and form.is_valid():
        saved = _saved(
            request,
            form,
            lambda: credentials.credential_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                type=type_,
                owner=form.cleaned_data["owner"],
                fields=form.plain_fields(),
                secrets=form.secret_fields(),
                allowed_hosts=form.cleaned_data["allowed_hosts"],
            ),
        )
        if saved:
            return saved
    return _form_page(request, form, None, status=422 if form.errors else 200)


@role_required(PERMISSION)
def credential_edit(request, credential_id):
    credential = get_object_or_404(Credential, pk=credential_id)
    form = CredentialForm(
        request.POST or None,
        type_=credential.type,
        credential=credential,
        initial=CredentialForm.initial_for(credential),
    )
    if request.method == "POST" and form.is_valid():
        saved = _saved(
            request,
            form,
            lambda: credentials.credential_update(
                credential=credential,
                actor=request.user,
                owner=form.cleaned_data["owner"],
                fields=form.plain_fields(),
                secrets=form.secret_fields(),
                expected_version=form.cleaned_data["version"],
                allowed_hosts=form.cleaned_data["allowed_hosts"],
            ),
        )
        if saved:
            return saved
    return _form_page(request, form, credential, status=422 if form.errors else 200)


def _saved(request, form, save):
    """Run the store's write; on a refusal (a stale version, a taken name)
    the form shows why and keeps what was typed, secrets excepted."""
    try:
        credential = save()
    except credentials.CredentialError as exc:
        form.add_error(None, str(exc))
        return None
    messages.success(request, f"Credential “{credential.name}” saved.")
    return redirect("credentials:list")


def _form_page(request, form, credential, status):
    context = {
        "form": form,
        "credential": credential,
        "type_label": CredentialType(form.type).label,
        "used_by": credentials.flows_using(credential.name) if credential else [],
    }
    return render(request, "connectors/credential_form.html", context, status=status)


@require_POST
@role_required(PERMISSION)
def credential_delete(request, credential_id):
    credential = get_object_or_404(Credential, pk=credential_id)
    credentials.credential_delete(credential=credential, actor=request.user)
    messages.success(
        request,
        f"Credential “{credential.name}” deleted; steps that name it now fail until "
        "a credential of that name exists again.",
    )
    return redirect("credentials:list")

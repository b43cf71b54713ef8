"""A parameter no field can hold (a NUL character) is a 400 that names it,
on every page, before any view reads it; nothing is written."""

from urllib.parse import urlencode

from django.urls import reverse

from runs import driver
from runs.ground.models import Event
from runs.models import Run
from tests.conftest import login
from tests.engine_helpers import chain, publish

FORM = "application/x-www-form-urlencoded"


def test_a_nul_in_a_query_is_a_400_naming_the_parameter(client, olga):
    login(client, olga)
    for url in ("/flows/?q=a%00b", "/runs/dead-letters/?flow=%00", "/flows/?%00=1"):
        response = client.get(url)
        assert response.status_code == 400, url
        assert "contains a NUL character, which no field accepts" in response.content.decode()


def test_a_nul_in_a_form_changes_nothing(client, olga):
    flow = publish(olga, chain({"id": "wait", "type": "delay", "config": {"seconds": 600}}))
    run = driver.start_run(flow=flow, input={}, actor="user:olga")
    events = Event.objects.filter(stream=run.stream).count()
    login(client, olga)
    url = reverse("runs:cancel", args=[run.pk])
    for body in ({"reason": "oops\x00"}, urlencode({"reason": "oops\x00"})):  # multipart, plain
        kind = (
            {} if isinstance(body, dict) else {"content_type": "application/x-www-form-urlencoded"}
        )
        response = client.post(url, body, **kind)
        assert response.status_code == 400
        assert "'reason' contains a NUL character" in response.content.decode()
    assert Run.objects.get(pk=run.pk).status == run.status
    assert Event.objects.filter(stream=run.stream).count() == events

"""schemathesis against the live API: the schema the running application
serves, fetched with a token of each scope, every operation fuzzed with
valid and invalid data, and every check schemathesis has (server errors,
undocumented status codes, content types, headers and bodies off their
schema, invalid data accepted, valid data refused, auth ignored, a missing
required header, unsupported methods), at least 50 examples per operation.

The requests go to the WSGI application in this process (schemathesis'
WSGI transport), on the test database: the same middleware, auth, views
and error handlers as behind a server, without a socket per request.

One expectation is widened, and why: schemathesis' "valid data accepted"
takes 400 and 422 for refusals of schema-valid data, which this API gives
where JSON Schema cannot say what the domain refuses (a NUL character the
event log cannot store, an input that breaks the flow's trigger schema, a
draft that cannot be published): each is documented on every operation in
the one error shape.
"""

import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from config.wsgi import application
from tests.api_helpers import token_for
from tests.approval_helpers import INPUT, approval_flow
from tests.engine_helpers import READY, chain, publish

SCOPES = ("read", "operate", "review", "admin")
EXAMPLES = int(os.environ.get("LEDGERFLOW_FUZZ_EXAMPLES", 50))
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": [
                    "2xx",
                    "3xx",
                    "400",
                    "401",
                    "403",
                    "404",
                    "409",
                    "422",
                    "429",
                ],  # fmt: skip
            }
        }
    }
)


@pytest.fixture
def in_process():
    """As Django's own test client does: the application does not close the
    test's database connection at the end of each request."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(adam, make_flow):
    """Something for the fuzzer to find: an active flow with a run, a
    draft, and an approval task waiting in the reviewers' queue."""
    from runs import driver

    flow = make_flow(adam, owner=adam, **READY)
    publish(adam, chain({"id": "shape", "type": "transform", "config": {"fields": {}}}),
            slug=flow.slug)  # fmt: skip
    flow.refresh_from_db()
    driver.start_run(flow=flow, input={}, actor="user:adam")
    driver.start_run(flow=approval_flow(adam, slug="refunds"), input=INPUT, actor="user:adam")


def _fuzz(schema, secret: str) -> tuple[list[str], dict[str, float]]:
    failures: list[str] = []
    seconds: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {secret}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case):
            case.call_and_validate(headers=headers)

        began = time.monotonic()
        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported together
            failures.append(f"{operation.label}: {exc}")
        seconds[operation.label] = round(time.monotonic() - began, 1)
    return failures, seconds


@pytest.mark.parametrize("scope", SCOPES)
def test_schemathesis_finds_nothing(
    in_process, celery_in_thread, olga, rita, adam, seeded, scope, settings
):
    settings.LEDGERFLOW_API_WRITES_PER_MINUTE = 1_000_000
    # An admin's token of each scope: the scope, not the role, limits it.
    secret = token_for(adam, scope)
    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/openapi.json", application, config=CONFIG,
        headers={"Authorization": f"Bearer {secret}"},
    )  # fmt: skip
    assert len(list(schema.get_all_operations())) >= 19
    failures, seconds = _fuzz(schema, secret)
    print(f"\n{scope}: {sum(seconds.values()):.1f} s over {len(seconds)} operations", seconds)
    assert not failures, "\n\n".join(failures)

"""The demo payments API's port is chosen once per data directory
(config/demo.py): free at first start, kept after, overridable."""

import socket

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import demo


@pytest.fixture
def held_port():
    """A port some other program holds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_preferred_port_is_passed_over_and_the_choice_kept(
    tmp_path, monkeypatch, held_port
):
    monkeypatch.delenv("LEDGERFLOW_DEMO_PAYMENTS_PORT", raising=False)
    monkeypatch.setattr(demo, "PREFERRED", held_port)
    port = demo.payments_port(tmp_path)
    assert port != held_port
    assert (tmp_path / "demo-payments-port").read_text().strip() == str(port)
    # Kept: a later start keeps the URL that seed_demo froze into the flow,
    # even if the preferred port is free by then.
    monkeypatch.setattr(demo, "PREFERRED", port + 1)
    assert demo.payments_port(tmp_path) == port
    assert demo.payments_url(tmp_path) == f"http://127.0.0.1:{port}"


def test_two_data_directories_get_two_ports_while_the_first_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("LEDGERFLOW_DEMO_PAYMENTS_PORT", raising=False)
    (tmp_path / "a").mkdir()
    first = demo.payments_port(tmp_path / "a")
    with socket.socket() as running:  # the first checkout's demo API
        running.bind(("127.0.0.1", first))
        (tmp_path / "b").mkdir()
        assert demo.payments_port(tmp_path / "b") != first


def test_the_environment_overrides_and_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERFLOW_DEMO_PAYMENTS_PORT", "9911")
    assert demo.payments_port(tmp_path) == 9911
    monkeypatch.delenv("LEDGERFLOW_DEMO_PAYMENTS_PORT")
    assert demo.payments_port(tmp_path) == 9911


@pytest.mark.parametrize("value", ["abc", "0", "70000"])
def test_a_bad_port_in_the_environment_is_a_clear_error(tmp_path, monkeypatch, value):
    monkeypatch.setenv("LEDGERFLOW_DEMO_PAYMENTS_PORT", value)
    with pytest.raises(ImproperlyConfigured, match="LEDGERFLOW_DEMO_PAYMENTS_PORT"):
        demo.payments_port(tmp_path)
    assert not (tmp_path / "demo-payments-port").exists()


def test_the_fake_crm_port_is_kept_apart_from_the_payments_api(tmp_path, monkeypatch):
    monkeypatch.delenv("LEDGERFLOW_DEMO_PAYMENTS_PORT", raising=False)
    monkeypatch.delenv("LEDGERFLOW_DEMO_CRM_PORT", raising=False)
    payments = demo.payments_port(tmp_path)
    # Even when the CRM's preferred port is the payments API's (both free
    # now, as at a first start before anything listens).
    monkeypatch.setattr(demo, "CRM_PREFERRED", payments)
    crm = demo.crm_port(tmp_path)
    assert crm != payments
    assert (tmp_path / "demo-crm-port").read_text().strip() == str(crm)
    assert demo.crm_url(tmp_path) == f"http://127.0.0.1:{crm}"
    monkeypatch.setenv("LEDGERFLOW_DEMO_CRM_PORT", "9912")
    assert demo.crm_port(tmp_path) == 9912
    monkeypatch.delenv("LEDGERFLOW_DEMO_CRM_PORT")
    assert demo.crm_port(tmp_path) == 9912

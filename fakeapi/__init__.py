"""The demo's outside world: fake external APIs served for real on 127.0.0.1
(tests, drills, demo), and the demo and benchmark connectors that call them
(``fakeapi/connectors``), installed as an app only when ``LEDGERFLOW_DEMO``
is on."""

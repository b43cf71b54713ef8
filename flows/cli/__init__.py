"""The `ledgerflow` command-line client: a thin wrapper over /api/v1/.

It speaks HTTP only (httpx) and imports no Django and nothing else of the
project, so it runs on a machine that has only the client installed."""

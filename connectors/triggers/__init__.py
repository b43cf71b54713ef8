"""Triggers: how the outside world starts runs (webhooks, schedules, the
event bus, queues, the manual start form). The trigger connectors themselves
are modules of ``connectors/nodes`` (``trigger_*.py``); this package holds what
they need around them: the delivery ledger, the pages and the consumers."""

"""How a step reaches the outside: the outbound guard (``netguard``), allowed
hosts, the JSON call helper (``remote``), circuit breakers and rate limits
with their store and page, and response drift."""

"""The ground layer: what every app stands on and that imports no app.

The event store (append, streams, canonical text, hash chain, verification),
redaction of secrets before hashing, the plain-JSON check, the one clock, and
the projector registry that each app fills from its ``AppConfig.ready()``.
Only Django and the standard library lie below it; an import-linter contract
(pyproject.toml) keeps it that way.
"""

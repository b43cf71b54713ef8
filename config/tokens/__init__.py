"""Personal API tokens: created and revoked on the profile page, stored as
a SHA-256 digest of a high-entropy secret, shown once, with a scope and an
optional expiry. Also the API's idempotency keys and write rate limits."""

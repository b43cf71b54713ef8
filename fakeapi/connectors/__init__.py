"""Demo and benchmark node types, one module per key like
``connectors/nodes``: stand-ins for a shop's payments and inventory APIs
(served by ``fakeapi/payments.py``) and a CPU-bound step for benchmarks."""

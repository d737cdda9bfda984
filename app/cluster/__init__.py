"""Several gateway replicas on one PostgreSQL database (``GATEWAY_CLUSTER``).

Nothing here is a protocol of its own: PostgreSQL decides everything, with leases (a
conditional UPDATE), row guards on every change of a run, and ``LISTEN``/``NOTIFY`` to wake
the other replicas. See docs/scaling.md for the model and what happens on each failure.
"""

"""The life of a run: submitted, enqueued, followed, reconciled, ended (see ARCHITECTURE.md)."""

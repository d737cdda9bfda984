"""An OpenAI-compatible images API (``/v1``) served by registered workflows."""

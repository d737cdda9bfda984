"""Webhooks: what is sent where and when (policy), and the outbox worker that sends it."""

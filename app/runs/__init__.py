"""Services of the gateway: workflow registration and the run lifecycle."""

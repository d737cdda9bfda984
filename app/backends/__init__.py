"""Several InvokeAI servers behind one gateway: their list, and where each run goes."""

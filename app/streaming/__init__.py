"""Live run events to SSE readers: the broker, the wire encoding, the stream writer."""

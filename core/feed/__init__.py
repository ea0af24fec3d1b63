"""The exchange feed (`risk-feed/1`): messages, signatures, the engine stepped by them, and the
transports they travel on (a JSONL file, NATS JetStream)."""

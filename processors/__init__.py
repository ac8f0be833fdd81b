"""Pure model steps: one dataclass in, one out; no Kafka, Faust or OpenTelemetry imports."""

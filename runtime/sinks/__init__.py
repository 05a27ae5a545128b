"""Output sinks: annotated video, JSON lines."""

"""z6 engine."""

"""z6 ipc."""

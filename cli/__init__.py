"""z6 cli."""

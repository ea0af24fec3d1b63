"""A run with its store: the session that drives engine, store and desk together, the commands
on their way in, and the snapshots the console is shown."""

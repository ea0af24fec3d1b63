"""The run store in SQLite: schema, journal and events, the snapshot format, the writer thread,
and what readers ask of a store."""

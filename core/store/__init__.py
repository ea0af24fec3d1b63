"""The run store in SQLite: schema, journal and events, the snapshot format, group commits,
and what readers ask of a store."""

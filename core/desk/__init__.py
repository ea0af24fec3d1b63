"""The people at the desk, recorded in the store: operators and logins, the audit chain,
maker-checker requests, alerts, and the authority a command is checked against."""

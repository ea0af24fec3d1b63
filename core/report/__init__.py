"""The incident report: what a store says about a time range, and its JSON and CSV output."""

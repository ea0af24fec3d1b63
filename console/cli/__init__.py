"""The `risk-console` command line: headless runs, operator and audit commands, reports."""

"""The console's views: tables, charts, the overview and the account detail."""

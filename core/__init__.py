"""Risk engine and store: exact money, margin math, liquidation, ledger. Never imports Qt."""

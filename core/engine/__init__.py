"""The deterministic engine: the facade and its collaborators (liquidation desk, ledger,
deficit, ADL and clawback, settlement, controls, trading, surveillance) and the run result."""

"""The position book in numpy columns, its valuation, and liquidation and bankruptcy prices."""

"""What-if: fork a stored run at a tick, act differently, and compare the outcomes."""

"""Zuora billing events back to the deal: the rules RevOps edit, and the flow that applies them."""

"""Settlement and reconciliation: acquirers' settlement files, matching, and the finance reports."""

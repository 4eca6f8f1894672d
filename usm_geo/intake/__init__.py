"""Intake: readers for every input format, column and date detection, checks, and the ledger."""

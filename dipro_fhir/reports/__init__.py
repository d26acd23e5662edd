"""Shared pieces of the HTML reports (figures)."""

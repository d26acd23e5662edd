"""Placeholder until the fixture module lands."""

"""Attacks: image triggers (triggers.py); which pairs they poison, and how (poison.py)."""

"""Attacks: image triggers (triggers.py) and which pairs they poison, with which captions (poison.py)."""

"""Pretrained tools that need no training (see docs/vegetation.md)."""

"""hardmail package."""

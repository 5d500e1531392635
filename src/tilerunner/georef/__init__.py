"""georef."""

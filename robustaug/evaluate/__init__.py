"""robustaug.evaluate."""

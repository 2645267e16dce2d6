"""robustaug.labelnoise."""

"""robustaug.losses."""

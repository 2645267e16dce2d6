"""robustaug.integrations."""

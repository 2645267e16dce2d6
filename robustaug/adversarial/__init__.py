"""robustaug.adversarial."""

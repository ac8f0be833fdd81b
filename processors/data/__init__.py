"""Data files of our own that the processors ship with (training samples, lexicons)."""

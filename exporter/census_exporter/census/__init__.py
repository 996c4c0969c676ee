"""Everything that speaks to the Census Management API: the HTTP client and the response models."""

"""The IMDS and container-credentials handlers."""

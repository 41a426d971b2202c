"""The included STS + IAM backend."""

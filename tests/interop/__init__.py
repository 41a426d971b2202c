"""Interop tests: real third-party clients (botocore, the AWS SDK for JavaScript) against our code."""

"""Shared protocol code: SigV4, the HTTP serving layer, clocks. Imports nothing of ours."""

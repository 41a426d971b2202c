"""The rolecall command: argument parsing and wiring; thin."""

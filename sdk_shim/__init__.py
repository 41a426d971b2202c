"""What SDK-side code imports or runs; stays cheap to import (no trio, no httpx)."""

"""What SDK-side code imports or runs; stays cheap to import (no trio, no httpx, no keyring).

Modules: ``credential_process`` (the warm path of ``rolecall credential-process``:
the session cache, or the user's agent) and ``botocore`` (``install(session,
profile=...)``: a refreshable provider at the front of a botocore session's chain).
"""

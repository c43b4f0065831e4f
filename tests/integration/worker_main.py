"""Entry point of an EventPro worker subprocess for integration tests (settings from env)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eventpro.worker import run_worker

if __name__ == "__main__":
    run_worker()

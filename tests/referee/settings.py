"""Settings for the zkbridge processes a test starts (tests/stack.py): production's, plus the referee watching
the emulators. Their verdicts go to $ZKBRIDGE_REFEREE_DIR for the running test to collect."""

import os

from zkbridge.settings import *  # noqa: F403

SANDBOX_OBSERVERS = ["tests.referee.observe"]
os.environ["ZKBRIDGE_REFEREE_SUBPROCESS"] = "1"

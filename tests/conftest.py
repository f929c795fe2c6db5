import os

import pytest

from parity_kinds._common import FIXTURE_PRESENT, MAX_ERROR, PARITY_DIR, load_index

REQUIRE_FIXTURES = os.environ.get("SEEDVC_REQUIRE_FIXTURES", "") not in ("", "0")


def pytest_configure(config):
    # CI runs every case: there an absent or empty fixture folder is an error, not a reason to skip.
    if REQUIRE_FIXTURES and not (FIXTURE_PRESENT and load_index().get("cases")):
        raise pytest.UsageError(f"SEEDVC_REQUIRE_FIXTURES is set but {PARITY_DIR} holds no parity cases "
                                f"(index.json); set SEEDVC_PARITY_DIR to the fixture folder")


def pytest_terminal_summary(terminalreporter):
    if MAX_ERROR:
        terminalreporter.section("parity: largest |got - expected| per kind")
        for kind in sorted(MAX_ERROR):
            terminalreporter.write_line(f"{kind:24s} {MAX_ERROR[kind]:.3e}")

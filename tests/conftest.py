from parity_kinds._common import MAX_ERROR


def pytest_terminal_summary(terminalreporter):
    if MAX_ERROR:
        terminalreporter.section("parity: largest |got - expected| per kind")
        for kind in sorted(MAX_ERROR):
            terminalreporter.write_line(f"{kind:24s} {MAX_ERROR[kind]:.3e}")

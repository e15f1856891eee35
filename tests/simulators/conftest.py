from tests.backends.seeds import header


def pytest_report_header(config):
    return header()

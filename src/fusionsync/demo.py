"""The end-to-end demo (placeholder until the sample catalog lands)."""


def run_demo() -> int:
    return 0

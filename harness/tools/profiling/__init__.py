"""Profile and validate stages: Nsight Compute metrics of selected cells (``flashcore profile``) and
compute-sanitizer runs of the project's kernels (``flashcore validate``). Command building and output
parsing live in small modules (``ncu``, ``sanitizer``) that are unit-tested on canned text; ``cli`` holds
the typer commands."""

SUITE_PREFIX = "profile:"  # a profile run is stored as suite "profile:<suite>": ncu metrics, no medians


def profile_suite(suite: str) -> str:
    return f"{SUITE_PREFIX}{suite}"


def is_profile_suite(suite: str) -> bool:
    return suite.startswith(SUITE_PREFIX)

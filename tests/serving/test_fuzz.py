"""Schemathesis against the service's own OpenAPI schema: whatever it generates for each
operation (valid and not), no request gets a 5xx. A short budget, run in CI."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from cadence.serving.main import create_app

pytestmark = [
    pytest.mark.unit,
    # Hypothesis notices Python's global `random` moving while it draws a case (seen once in
    # CI). The generators here never touch it; another thread of the test session can, at any
    # moment, and the warning is then no fault of this test.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]
EXAMPLES = 15


def _role(path: str) -> str:
    if path.startswith("/v1/audit-log"):
        return "reviewer"
    if path.startswith(("/v1/keys", "/v1/config")):
        return "admin"
    return "service"


def test_no_generated_request_gets_a_server_error(service, keys):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service))
    failures, operations, seen = [], 0, {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.headers = {**(case.headers or {}), "X-API-Key": keys[_role(case.path)]}
            response = case.call()
            seen[response.status_code // 100] = seen.get(response.status_code // 100, 0) + 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        run()
    assert operations >= 14
    # Not only refusals: some generated requests get through to the handlers.
    assert seen.get(2, 0) > 0 and seen.get(4, 0) > 0, seen
    assert not failures, "\n".join(failures[:10])

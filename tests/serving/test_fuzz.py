"""Schemathesis fuzzes every route of the OpenAPI schema: no input may produce a 5xx (bounded run:
a fixed number of derandomised examples per operation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from ctxrec.serving import ServingSettings, create_app

EXAMPLES = 12


def test_no_input_gives_a_server_error(fusion_run: Path, tmp_path: Path) -> None:
    app = create_app(ServingSettings(model=str(fusion_run), store=str(tmp_path / "s.sqlite")))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 10
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=[not_a_server_error])

        try:
            run()
        except Exception as exc:  # noqa: BLE001 -- any exception is the finding: name the operation
            pytest.fail(f"{op.method.upper()} {op.path}: {exc}")

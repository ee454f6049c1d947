from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from app.routers.query import PredictQuery, parse_query, query_parameters_doc


def request_with(query: bytes) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "query_string": query, "headers": []})


def test_parse_query_converts_and_ignores_unknown_parameters() -> None:
    query = parse_query(request_with(b"top_k=3&explain=input&debug=1"), PredictQuery)
    assert (query.top_k, query.explain) == (3, "input")
    assert parse_query(request_with(b""), PredictQuery) == PredictQuery()


@pytest.mark.parametrize("raw", [b"top_k=0", b"top_k=10001", b"top_k=three", b"explain=everything"])
def test_parse_query_raises_fastapis_validation_error_located_in_query(raw: bytes) -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_query(request_with(raw), PredictQuery)
    [error] = caught.value.errors()
    assert error["loc"][:2] == ("query", raw.split(b"=")[0].decode())


def test_query_parameters_doc_lists_every_field_as_optional_query_parameter() -> None:
    parameters = query_parameters_doc(PredictQuery)["parameters"]
    assert [p["name"] for p in parameters] == ["top_k", "explain"]
    assert all(p["in"] == "query" and not p["required"] and p["description"] for p in parameters)
    assert all("default" not in p["schema"] for p in parameters)

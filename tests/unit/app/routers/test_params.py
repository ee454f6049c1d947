from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from app.routers.params import PredictParams, VersionPredictParams, parameters_doc, parse_params


def request_with(query: bytes, **path: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "query_string": query, "headers": [],
                    "path_params": path})


def test_parse_params_converts_and_ignores_unknown_query_parameters() -> None:
    params = parse_params(request_with(b"top_k=3&explain=input&debug=1", name="mnist-lenet"), PredictParams)
    assert (params.name, params.top_k, params.explain, params.model_version) == ("mnist-lenet", 3, "input", None)
    versioned = parse_params(request_with(b"", name="m", version="2"), VersionPredictParams)
    assert (versioned.top_k, versioned.model_version) == (None, 2)


def test_parse_params_keeps_the_path_over_a_query_parameter_of_the_same_name() -> None:
    assert parse_params(request_with(b"name=other", name="mnist-lenet"), PredictParams).name == "mnist-lenet"


@pytest.mark.parametrize(("raw", "path", "loc"), [
    (b"top_k=0", {}, ("query", "top_k")), (b"top_k=10001", {}, ("query", "top_k")),
    (b"top_k=three", {}, ("query", "top_k")), (b"explain=everything", {}, ("query", "explain")),
    (b"", {"name": "x" * 65}, ("path", "name")), (b"", {"version": "0"}, ("path", "version")),
    (b"", {"version": "latest"}, ("path", "version")),
])
def test_parse_params_raises_fastapis_validation_error_located_where_the_value_was(
        raw: bytes, path: dict[str, str], loc: tuple[str, str]) -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_params(request_with(raw, **{"name": "m", "version": "1", **path}), VersionPredictParams)
    [error] = caught.value.errors()
    assert error["loc"][:2] == loc


def test_parameters_doc_lists_path_parameters_first_and_required() -> None:
    parameters = parameters_doc(VersionPredictParams)["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in parameters] == [
        ("name", "path", True), ("version", "path", True), ("top_k", "query", False), ("explain", "query", False)]
    assert all(p["description"] and "default" not in p["schema"] for p in parameters)

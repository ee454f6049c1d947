"""Query parameters of the prediction routes, validated by pydantic inside the route.

FastAPI 0.165 inspects every declared parameter's annotation again on each request (is it a
sequence, a model, JSON?) before validating it. For the two optional query parameters of the
predict route that cost ~45 us of server CPU per request (in-process harness, LeNet at c32:
330-362 -> 280-296 us), more than LeNet's own run, and the server process is LeNet's bottleneck.
One `model_validate` of the whole query applies the same constraints with the same messages; a
failure is raised as FastAPI's own RequestValidationError, so clients get the same 422. The
OpenAPI parameters are published from the same model."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

Q = TypeVar("Q", bound=BaseModel)


class PredictQuery(BaseModel):
    top_k: int | None = Field(None, ge=1, le=10_000, description=(
        "How many classes to return, best first (default 5, or all classes if fewer; at most the number of classes)"))
    explain: Literal["input"] | None = Field(None, description=(
        "`input`: also return the preprocessed model input as a PNG data URL (`input_image`), to see what the "
        "model saw"))


def parse_query(request: Request, model: type[Q]) -> Q:
    """The query string as `model`; unknown parameters are ignored, as FastAPI ignores them."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("query", *error["loc"])}
                                      for error in exc.errors(include_url=False)]) from exc


def query_parameters_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s fields as OpenAPI query parameters, in the form FastAPI gives declared ones."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        field_schema = {key: value for key, value in field.items() if not (key == "default" and value is None)}
        parameters.append({"name": name, "in": "query", "required": name in required, "schema": field_schema,
                           "description": field.get("description", "")})
    return {"parameters": parameters}

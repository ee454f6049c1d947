"""The prediction routes' path and query parameters, parsed in the route by one pydantic model.

This is the one place where parameters are not declared to FastAPI: FastAPI inspects every declared
parameter's annotation again on each request (is it a sequence, a model, JSON?) before validating
it, and for the predict routes' model name and two optional query parameters that costs more server
CPU per request than a small model's own run (docs/performance.md). One `model_validate` of the
path and query together applies the same constraints with the same messages; a failure is raised
as FastAPI's own RequestValidationError, located in `path` or `query`, so clients get the same 422.
The OpenAPI parameters are published from the same model (`parameters_doc`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from app.routers.deps import MODEL_NAME_RULES, VERSION_RULES

P = TypeVar("P", bound="PredictParams")


class PredictParams(BaseModel):
    PATH: ClassVar[tuple[str, ...]] = ("name",)

    name: str = Field(**MODEL_NAME_RULES)
    top_k: int | None = Field(None, ge=1, le=10_000, description=(
        "How many classes to return, best first (default 5, or all classes if fewer; at most the number of classes)"))
    explain: Literal["input"] | None = Field(None, description=(
        "`input`: also return the preprocessed model input as a PNG data URL (`input_image`), to see what the "
        "model saw"))

    @property
    def model_version(self) -> int | None:
        return None


class VersionPredictParams(PredictParams):
    PATH: ClassVar[tuple[str, ...]] = ("name", "version")

    version: int = Field(**VERSION_RULES)

    @property
    def model_version(self) -> int | None:
        return self.version


def parse_params(request: Request, model: type[P]) -> P:
    """The path and query as `model`. Unknown query parameters are ignored, as FastAPI ignores
    them, and one named like a path parameter does not override it."""
    values: dict[str, Any] = dict(request.query_params)
    values.update(request.path_params)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": (where(model, error["loc"]), *error["loc"])}
                                      for error in exc.errors(include_url=False)]) from exc


def where(model: type[PredictParams], loc: tuple[Any, ...]) -> str:
    return "path" if loc and loc[0] in model.PATH else "query"


def parameters_doc(model: type[PredictParams]) -> dict[str, Any]:
    """`model`'s fields as OpenAPI parameters, path first, in the form FastAPI gives declared ones."""
    schema = model.model_json_schema()
    names = [*model.PATH, *(name for name in schema["properties"] if name not in model.PATH)]
    parameters = []
    for name in names:
        field = schema["properties"][name]
        field_schema = {key: value for key, value in field.items() if not (key == "default" and value is None)}
        in_path = name in model.PATH
        parameters.append({"name": name, "in": "path" if in_path else "query", "required": in_path,
                           "schema": field_schema, "description": field.get("description", "")})
    return {"parameters": parameters}

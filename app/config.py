"""Settings: the one place the service reads its environment (variables prefixed APP_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.inference.backends import BACKENDS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APP_", frozen=True, extra="ignore")

    model_dir: Path = Field(Path("models"), description="Model repository: <model_dir>/<name>/<version>/")
    backend: str = Field("auto", description="The model runtime: paddle (Paddle Inference, oneDNN on CPU or CUDA "
                                               "on GPU), paddle-bf16 (Paddle Inference with oneDNN's bfloat16 "
                                               "kernels, CPU with bf16 instructions), onnxruntime or openvino "
                                               "(CPU, from the model's ONNX file), "
                                               "openvino-bf16 (CPU with bf16 instructions), onnxruntime-int8 or "
                                               "openvino-int8 (from the model's int8 ONNX file), or auto (per model, "
                                               "the fastest installed, measured at warm-up; bf16 and int8 only where "
                                               "the model's stored test images give Paddle Inference's answers)")
    model_backend: dict[str, str] = Field(default_factory=dict,
                                          description='Per model, JSON: {"mnist-lenet": "onnxruntime"}')
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="auto picks the GPU when usable")
    cpu_threads: int = Field(0, ge=0, description="Math threads per predictor; 0 = measured per model at warm-up: "
                                                  "where usable CPUs (affinity, cgroup quota) / predictors threads "
                                                  "run one image faster than one, one one-thread predictor process "
                                                  "per CPU, and a batch alone (nothing else running or queued) runs "
                                                  "on all of its share of the CPUs; else one thread")
    predictors: int = Field(1, ge=1, le=64, description="Predictors per model, each running one batch at a time "
                                                        "(with APP_CPU_THREADS=0, at least one per core where "
                                                        "the model's threads pay)")
    isolation: Literal["process", "thread"] = Field(
        "process", description="process: each predictor in a child process, so inference never holds the "
                               "server's GIL (overloads are refused at once); thread: in the server process")
    omp_blocktime_ms: Annotated[int, Field(ge=0, le=10_000)] | Literal["auto"] = Field(
        "auto", description="How long math threads spin after a run before sleeping, in ms; auto = twice the "
                            "model's previous run (1-200 ms): short for small models, whose spinning would take "
                            "the server's core, long enough for large ones not to pay a wake-up per request")
    onednn: bool = Field(True, description="Use oneDNN (MKL-DNN) kernels on CPU")
    gpu_memory_mb: int = Field(512, ge=64, description="Initial GPU memory pool per predictor")
    gpu_id: int = Field(0, ge=0)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest accepted image file")
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Largest accepted request body")
    max_body_bytes_in_flight: int = Field(256 * 1024 * 1024, ge=1, description="Request bodies being received "
                                          "at once, in bytes, over all requests: beyond it, 503 before reading")
    max_json_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest /v2 JSON tensor part (numbers "
                                "written out as text); larger tensors go in the binary extension")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Largest accepted width x height")
    max_request_pixels: int = Field(200_000_000, ge=1, description="Width x height summed over the images of "
                                    "one request: bounds the decoding one request may ask for")
    max_batch_files: int = Field(64, ge=1, description="Most files in one batch request")
    max_header_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Largest request line "
                                  "and headers (431 beyond, then the connection is closed)")
    header_timeout_seconds: float = Field(10.0, gt=0, le=600, description="A request's headers must arrive "
                                          "within this, counted from the connection's start or the previous "
                                          "response: idle and slow-header connections are closed")
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="A request's whole body must arrive "
                                        "within this, once its headers are in (408 beyond)")
    keep_alive_seconds: int = Field(5, ge=1, le=600, description="An idle keep-alive connection is closed after this")
    max_connections: int = Field(1000, ge=1, description="Open connections at most (fewer where the descriptor "
                                 "limit, ulimit -n, is lower); connections beyond it are closed at once")
    shutdown_seconds: float = Field(30.0, gt=0, le=3600, description="After SIGTERM's drain, in-flight requests "
                                    "and then the predictors get this long each; what is left is stopped")
    default_top_k: int = Field(5, ge=1)
    max_batch_size: int = Field(0, ge=0, le=1024, description="Largest batch per predictor run; 0 = measure "
                                                              "at warm-up and keep the best images/s")
    model_max_batch_size: dict[str, int] = Field(default_factory=dict,
                                                 description='Per model, JSON: {"mnist-lenet": 32}')
    max_batch_delay_ms: float = Field(0.0, ge=0, le=1000, description="Wait this long for a fuller batch; "
                                                                      "0 = take what is queued")
    predictor_max_memory_mb: int = Field(2048, ge=64, description="A predictor process using more memory "
                                         "than this after a batch (huge images decoded) is replaced")
    max_queue_images: int = Field(512, ge=1, description="Images waiting per model before 503")
    request_timeout_ms: int = Field(30_000, ge=1, description="Longest wait for a result before 504")
    admin_token: SecretStr | None = Field(None, description="Bearer token for /v1/admin/*; unset or empty = "
                                                            "admin disabled")
    model_poll_seconds: float = Field(0.0, ge=0, description="Rescan the model directory this often; 0 = never")
    drain_seconds: float = Field(2.0, ge=0, le=300, description="After SIGTERM: readiness 503 for this long "
                                                                  "before the server stops accepting")
    cors_origins: list[str] = Field(default_factory=list, description='Allowed browser origins, JSON: '
                                                                      '["https://example.org"]; none by default')
    log_level: str = Field("info")


    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value != "auto" and value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}: known are auto, {', '.join(sorted(BACKENDS))}")
        return value

    @field_validator("model_backend")
    @classmethod
    def _known_model_backends(cls, value: dict[str, str]) -> dict[str, str]:
        for kind in value.values():
            cls._known_backend(kind)
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: object) -> object:
        """An empty token (what compose's ${VAR} gives for a missing variable) would let an empty
        password in: it means unset, and the admin routes stay closed."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

"""An OpenAI-compatible endpoint a stage's model can be (``MAILROOM_ENDPOINTS``)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Port = Annotated[int, Field(ge=1, le=65535)]
#: a delay or timeout: not negative, and a number (NaN or infinity would never end)
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: a cost or a budget, in currency units
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Endpoint(BaseModel):
    """One OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp, a LiteLLM proxy).

    The key is never held here: ``api_key_env`` names the environment variable that holds
    it, read when the client is made, so no settings dump, log or error can show it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(pattern=r"^https?://", description="e.g. http://127.0.0.1:11434/v1")
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    input_usd_per_mtok: Money = 0.0
    output_usd_per_mtok: Money = 0.0
    timeout_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    max_output_tokens: int = Field(default=512, ge=1)
    max_concurrency: int = Field(default=8, ge=1)
    send_pii: bool = False
    #: ``json_schema`` (OpenAI, vLLM, Ollama) or ``json_object`` with the schema beside it
    #: (llama-cpp-python's server answers HTTP 500 to ``json_schema``).
    structured: Literal["json_schema", "json_object"] = "json_schema"

    def api_key(self) -> str:
        """The key from its variable; servers without keys get a placeholder."""
        return (os.environ.get(self.api_key_env) if self.api_key_env else None) or "none"

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok
        ) / 1_000_000

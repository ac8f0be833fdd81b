"""One frozen settings object, read from ``MAILROOM_*`` environment variables.

Every Kafka client the project opens (confluent-kafka admin/producer/consumer, aiokafka)
takes its connection and security options from here, so SASL/SSL set once applies
everywhere. OpenTelemetry keeps its own ``OTEL_*`` variables and is not configured here.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from streams.endpoint import Endpoint, Money, Port, Seconds
from streams.taxonomy import ConfigFile, Taxonomy, load_taxonomy

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class BreakerPolicy:
    """When a model's circuit breaker opens and for how long: it opens when, of the model's
    last ``window`` calls, at least ``threshold`` failed and they are at least
    ``failure_rate`` of them, the share taken over at least ``min_calls`` calls; it stays
    open ``cooldown_s``, then lets one trial call through."""

    threshold: int = 3
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    cooldown_s: float = 300.0


BREAKER = BreakerPolicy()

#: The stages whose model can be an LLM (``MAILROOM_MODELS``).
MODEL_STAGES = ("classify", "urgency", "extract", "generate", "quality")
LOCAL = "local"


class Settings(BaseSettings):
    """Runtime settings. Construct with keyword arguments in tests, from the env otherwise."""

    model_config = SettingsConfigDict(env_prefix="MAILROOM_", frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, ConfigFile(settings_cls))

    # -- the team's taxonomy ------------------------------------------------------------
    config: Path | None = Field(
        default=None,
        description="mailroom.toml: categories, policy, brand, knowledge base, models; "
        "default: the sample company's",
    )
    classifier: str | None = Field(
        default=None, description="id of a trained model (models train); default built-in"
    )

    # -- connection -------------------------------------------------------------------
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    client_options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra client options by librdkafka name: confluent-kafka takes them "
        "verbatim, aiokafka those it has an argument for (linger.ms -> linger_ms)",
    )

    # -- topics -----------------------------------------------------------------------
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="replicas of each topic topics create makes; default: "
        "the broker's default.replication.factor",
    )
    min_insync_replicas: int | None = Field(
        default=None, ge=1, description="min.insync.replicas of each topic; default: the broker's"
    )

    # -- naming -----------------------------------------------------------------------
    app_id: str = Field(
        default="mailroom",
        description="names the stages' consumer groups (<app id>.<stage>)",
    )
    topic_prefix: str = Field(default="", description="Prepended to every topic name.")

    # -- embedded broker --------------------------------------------------------------
    data_dir: Path = Path(".mailroom")
    broker_port: Port = 9092
    controller_port: Port = 9093
    kafka_dir: Path | None = Field(
        default=None, description="Folder with the Maven pom; default: ops/kafka of the checkout."
    )
    broker_heap: str = "768m"
    broker_security: Literal["PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="the embedded broker's listener: SASL_SSL is SCRAM over TLS, with a "
        "certificate authority made in <data dir>/tls (clients trust its ca.pem) and the "
        "MAILROOM_SASL_USERNAME / MAILROOM_SASL_PASSWORD user created at the first start",
    )
    broker_start_timeout_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    # -- pipeline ---------------------------------------------------------------------
    join_timeout_s: float = Field(
        default=120.0,
        gt=0,
        allow_inf_nan=False,
        description="triage-join wait before escalating; longer than the retry tiers' delays, "
        "so a half on its last retry still joins",
    )
    stage_concurrency: int = Field(
        default=32,
        ge=1,
        description="messages a stage has in hand at once (different keys; one key in order)",
    )

    # -- delivery -----------------------------------------------------------------------
    exactly_once: bool = Field(
        default=True,
        description="a stage's outputs and input offsets commit in one Kafka transaction "
        "(fenced by the group's generation); off: at-least-once, outputs acked then offsets",
    )
    instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="this worker's name in its transactional ids; give each worker a stable "
        "one and a restarted worker aborts its crashed predecessor's transactions at once "
        "(default: a new random one per start, aborted by the broker after the timeout)",
    )
    commit_interval_ms: int = Field(
        default=20, ge=1, description="a stage commits (a transaction) at most this often"
    )
    transaction_timeout_ms: int = Field(
        default=2000,
        ge=1000,
        description="a crashed worker's open transaction blocks its partitions this long",
    )
    group_protocol: Literal["classic", "consumer"] = Field(
        default="classic",
        description="classic: eager range rebalances; consumer: the group protocol of "
        "KIP-848 (Kafka 4; the broker assigns and moves only the partitions that change "
        "owner; seen stuck reconciling under load with librdkafka 2.16, so not the default)",
    )
    session_timeout_ms: int = Field(
        default=3000,
        ge=1000,
        description="classic protocol: a worker that stops heartbeating loses its "
        "partitions after this (the broker's group.min.session.timeout.ms must allow it); "
        "with the consumer protocol the broker's group.consumer.session.timeout.ms decides",
    )

    # -- failures -----------------------------------------------------------------------
    retry_delays_s: tuple[Seconds, ...] = Field(
        default=(1.0, 10.0, 60.0),
        min_length=1,
        description="one delay per retry tier; after the last: DLQ",
    )
    breaker_threshold: int = Field(
        default=BREAKER.threshold, ge=1, description="failures that open a breaker..."
    )
    breaker_failure_rate: float = Field(
        default=BREAKER.failure_rate, gt=0, le=1, description="...when they are this share"
    )
    breaker_window: int = Field(
        default=BREAKER.window, ge=1, description="calls a breaker looks back on"
    )
    breaker_min_calls: int = Field(
        default=BREAKER.min_calls, ge=1, description="the share is taken over at least this many"
    )
    breaker_cooldown_s: float = Field(
        default=BREAKER.cooldown_s,
        ge=0,
        allow_inf_nan=False,
        description="open this long, then one trial call",
    )
    faults: str = Field(default="", description="fault injection, see streams/faults.py")
    fallbacks: frozenset[str] = Field(
        default=frozenset({"classify", "generate"}),
        description="stages that fall back to their local fallback model (each stage names "
        "its own) while their breaker is open or a call would pass the budget",
    )

    # -- models -------------------------------------------------------------------------
    endpoints: dict[str, Endpoint] = Field(
        default_factory=dict,
        description="name -> OpenAI-compatible endpoint (JSON object); keys by variable name",
    )
    models: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description='stage -> backends tried in order, endpoint names or "local" (JSON '
        'object, e.g. {"generate": ["gpt", "local"]}); a stage not named uses ["local"]',
    )

    @field_validator("config", mode="before")
    @classmethod
    def _no_config(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value  # as unset

    @field_validator("fallbacks", "model_costs")
    @classmethod
    def _model_stages(cls, value: Any) -> Any:
        unknown = sorted(set(value) - set(MODEL_STAGES))
        if unknown:
            raise ValueError(
                f"names {unknown}, which are not model stages ({', '.join(MODEL_STAGES)})"
            )
        return value

    @model_validator(mode="after")
    def _chains_name_known_backends(self) -> Settings:
        for stage, chain in self.models.items():
            if stage not in MODEL_STAGES:
                known = ", ".join(MODEL_STAGES)
                raise ValueError(f"MAILROOM_MODELS names stage {stage!r}; model stages: {known}")
            if not chain:
                raise ValueError(f'MAILROOM_MODELS[{stage!r}] is empty; use ["local"]')
            unknown = [b for b in chain if b != LOCAL and b not in self.endpoints]
            if unknown:
                raise ValueError(
                    f"MAILROOM_MODELS[{stage!r}] names {unknown}, which MAILROOM_ENDPOINTS does "
                    f"not define (defined: {sorted(self.endpoints) or 'none'})"
                )
        return self

    @property
    def taxonomy(self) -> Taxonomy:
        """The taxonomy of ``config`` (checked when these settings were read)."""
        return load_taxonomy(self.config)

    def chain(self, stage: str) -> tuple[str, ...]:
        """The backends of ``stage``'s model, tried in order."""
        return self.models.get(stage, (LOCAL,))

    def paid(self, stage: str) -> bool:
        """Whether ``stage``'s chain holds an endpoint (an LLM), not only local models."""
        return any(backend != LOCAL for backend in self.chain(stage))

    cascade: bool = Field(
        default=True,
        description="a cheap first pass decides which paid models an email needs: a "
        "confident local classifier skips a paid one, an exact vetted answer a paid generator",
    )

    reply_allow: tuple[str, ...] = Field(
        default=(),
        description="domains, addresses and phone numbers a reply may name although the "
        "customer's email does not (the company's own); the support address always may",
    )

    # -- budget -------------------------------------------------------------------------
    model_costs: dict[str, Money] = Field(
        default_factory=lambda: {
            "classify": 0.0002,
            "urgency": 0.0001,
            "extract": 0.0001,
            "generate": 0.002,
            "quality": 0.0005,
        },
        description="cost of one call per stage (currency units)",
    )
    budget_per_email: Money = 0.05
    budget_per_day: Money = 100.0

    # -- observability ------------------------------------------------------------------
    tracing: bool = Field(default=True, description="OpenTelemetry spans (OTEL_* configure export)")
    jaeger_ui: str = Field(default="http://127.0.0.1:16686", description="for trace links")
    log_payloads: bool = Field(default=False, description="log bodies and addresses unredacted")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="a worker's JSON lines; debug adds one per routing decision"
    )

    # -- limits -----------------------------------------------------------------------
    max_email_bytes: int = Field(default=256 * 1024, ge=1)
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Prometheus endpoint; 0 = off"
    )
    metrics_host: str = "127.0.0.1"

    # -- derived client configurations -------------------------------------------------
    @property
    def mechanism(self) -> str | None:
        """The SASL mechanism: the one set, else SCRAM-SHA-512 under a SASL protocol."""
        if self.sasl_mechanism:
            return self.sasl_mechanism
        return "SCRAM-SHA-512" if self.security_protocol.startswith("SASL") else None

    def confluent_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka clients."""
        from streams.telemetry.logs import CLIENT_LOG  # librdkafka's lines through Python logging

        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "logger": CLIENT_LOG,
        }
        if self.mechanism:
            conf["sasl.mechanism"] = self.mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        cafile = self.cafile()
        if cafile:
            conf["ssl.ca.location"] = str(cafile)
        if self.ssl_certfile:
            conf["ssl.certificate.location"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            conf["ssl.key.location"] = str(self.ssl_keyfile)
        if self.ssl_key_password:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        conf.update(self.client_options)
        conf.update(extra)
        return conf

    def cafile(self) -> Path | None:
        """The authority clients trust over TLS: ``ssl_cafile``, else the embedded
        broker's of this data dir (``<data dir>/tls/ca.pem``) if there is one."""
        if self.ssl_cafile:
            return self.ssl_cafile
        embedded = self.data_dir / "tls" / "ca.pem"
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        return embedded if tls and embedded.exists() else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context for aiokafka, or None when the protocol has no TLS."""
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        cafile = self.cafile()
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if self.ssl_certfile:
            ctx.load_cert_chain(
                str(self.ssl_certfile),
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
                password=(
                    self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
                ),
            )
        return ctx

    def aiokafka_config(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers and consumers."""
        conf: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        ctx = self.ssl_context()
        if ctx is not None:
            conf["ssl_context"] = ctx
        if self.mechanism:
            conf["sasl_mechanism"] = self.mechanism
            conf["sasl_plain_username"] = self.sasl_username
            conf["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return conf

    @property
    def breaker(self) -> BreakerPolicy:
        return BreakerPolicy(
            self.breaker_threshold,
            self.breaker_failure_rate,
            self.breaker_window,
            self.breaker_min_calls,
            self.breaker_cooldown_s,
        )

    @property
    def retry_tiers(self) -> int:
        """How many ``<stage>.retry.<n>`` topics there are: one per retry delay. The one
        source for ``topics create``, the runners and the dead-letter routing."""
        return len(self.retry_delays_s)

    def topic(self, name: str) -> str:
        """The full topic name with this deployment's prefix."""
        return f"{self.topic_prefix}{name}"

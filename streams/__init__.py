"""The runtime: the stage loop on Kafka clients, the stages, guards, telemetry, commands.

::

    cli.py, worker.py   the top: what a user runs
    commands/    the operator commands (broker, topics, produce, consume, replay, audit, ...)
    stages/      the typed ticket, one handler per stage, the join, the stage registry
    models/      the model backends (the local models)
    guard/       what stands between a stage and a model: gate, breaker, budget, faults
    engine/      records, the runner, the per-message wrapper, in-flight offsets, retries,
                 the Kafka clients
    settings.py  one frozen settings object
    telemetry/   tracing, metrics, logs, and the sensor the wrapper calls
    errors.py    the error tree

Imports point down this list, never up (tests/unit/test_imports.py checks it).
"""

"""The runtime: Faust app, stage agents, routing, retries, breakers, budgets, telemetry, CLI."""

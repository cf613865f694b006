"""Operations: Prometheus metrics, structured logs, health, configuration reload, traces.

Everything here hangs off one policy (`OpsPolicy`, always the last policy) and a few routes
(`/metrics`, `/health/ready`, `/admin/reload`) added by `setup.install_ops`. Components that
want a gauge or a health check on the dashboards register it on the `Registry` found with
`registry.registry_of(gateway)` (docs/operations.md#hooks).
"""

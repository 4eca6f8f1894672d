"""Statistical models of areas: counts against risk and resilience factors (associations, not causes)."""

"""The clinical alert policy, pure: rules, lifecycle, clinician commands, evaluation metrics.

Entry points (all pure: no I/O, no clock; time is event time in epoch ms):

- ``evaluate(book, state, now_ms, policy, forecast) -> (book, notifications)``: advance one
  patient's alerts after the twin changed (or on a timer);
- ``apply_command(book, command) -> (book, audit_record)``: acknowledge, unacknowledge,
  silence, unsilence, annotate;
- ``alert_metrics(episodes, outcomes=..., patient_days=...)``: PPV, lead time, alert rate.

Errors: ``AlertError`` (a ``twin.TwinError``) for an invalid policy, book or pairing.
"""

from twin.alerting.book import (
    AlertBook,
    AlertRecord,
    Driver,
    ForecastRisk,
    ForecastWhy,
    Notification,
    Silence,
    Why,
)
from twin.alerting.commands import (
    AlertCommand,
    AuditRecord,
    acknowledge,
    annotate,
    apply_command,
    silence,
    unacknowledge,
)
from twin.alerting.lifecycle import evaluate, new_book
from twin.alerting.metrics import Episode, alert_metrics
from twin.alerting.policy import (
    DEFAULT_POLICY,
    SPO2_TARGET_LOW,
    AlertError,
    AlertPolicy,
    ForecastRiskRule,
    News2BandRule,
    News2SingleParameterRule,
    PatientOverride,
    QsofaRule,
    Rule,
    Severity,
    SustainedRule,
    load_policy,
)

__all__ = [
    "DEFAULT_POLICY",
    "SPO2_TARGET_LOW",
    "AlertBook",
    "AlertCommand",
    "AlertError",
    "AlertPolicy",
    "AlertRecord",
    "AuditRecord",
    "Driver",
    "Episode",
    "ForecastRisk",
    "ForecastRiskRule",
    "ForecastWhy",
    "News2BandRule",
    "News2SingleParameterRule",
    "Notification",
    "PatientOverride",
    "QsofaRule",
    "Rule",
    "Severity",
    "Silence",
    "SustainedRule",
    "Why",
    "acknowledge",
    "alert_metrics",
    "annotate",
    "apply_command",
    "evaluate",
    "load_policy",
    "new_book",
    "silence",
    "unacknowledge",
]

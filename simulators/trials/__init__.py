"""Virtual trials: treatment arms against populations of twins, monitoring in the loop.

A researcher states a population, arms and endpoints in YAML (``spec``); vitaltwin enrols
twins (``population``), allocates them (``allocation``: paired with common random numbers, or
stratified blocks), runs every twin under its arm(s) in shards across processes (``runner``;
identical results for any number of workers, resumable), extracts per-twin endpoints
(``endpoints``), analyses them (``analysis`` on ``stats``) and reports (``report``).

Arms (``policies``) are schedules or ``simulators.Policy`` objects; monitoring arms run the
production twin core, alert policy and (optionally) forecaster (``forecaster``) on the
delivered stream and act only on the alerts it raises. See docs/trials.md.
"""

from simulators.trials.analysis import analyse
from simulators.trials.errors import ResumeError, SpecError, TrialError
from simulators.trials.forecaster import News2TrendRisk, RiskModel, TftRisk, load_risk_model
from simulators.trials.policies import MonitoringPolicy, SignalRulePolicy
from simulators.trials.runner import Plan, TrialRun, load_run, plan_trial, run_shard, run_trial
from simulators.trials.spec import TrialSpec, load_spec, parse_spec

__all__ = [
    "MonitoringPolicy",
    "News2TrendRisk",
    "Plan",
    "ResumeError",
    "RiskModel",
    "SignalRulePolicy",
    "SpecError",
    "TftRisk",
    "TrialError",
    "TrialRun",
    "TrialSpec",
    "analyse",
    "load_risk_model",
    "load_run",
    "load_spec",
    "parse_spec",
    "plan_trial",
    "run_shard",
    "run_trial",
]

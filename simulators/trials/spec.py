"""The trial specification: population, design, arms, endpoints and analysis, as validated data.

A trial is written in YAML (``examples/trials/*.yaml``) and loaded with ``load_spec``, which
reports every problem at once with its place in the file (``arms[1] 'news2'.regimen.drug:
...``) instead of a traceback. The models are frozen pydantic models; ``TrialSpec.digest()``
is a stable hash of the normalised specification, used to refuse resuming an output directory
with a different trial in it.

Arm kinds (``kind``):

- ``usual_care``: the simulated clinicians only (``simulators.care``);
- ``none``: no treatment at all;
- ``protocol``: an idealised protocol triggered by diagnosis: a regimen from the *true* onset
  of the condition plus a delay (the one arm kind that reads ground truth; see docs/trials.md);
- ``schedule``: a regimen on the calendar for every eligible twin (a fixed schedule);
- ``signal_rule``: a regimen once observed signals meet a rule (reads the delivered stream);
- ``monitoring``: a regimen when the production alert policy fires, on twins kept by the
  production twin core from the delivered stream, optionally with a forecaster in the loop.

Every arm may run on top of the simulated clinicians (``usual_care: true``; default: the
trial's ``background_usual_care``), which is how an add-on trial of an early-warning system
is run.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulators.config import DEFAULT_START
from simulators.interventions import Drug, Intervention
from simulators.trials.errors import SpecError
from twin.alerting.policy import DEFAULT_POLICY, AlertPolicy, ForecastRiskRule
from twin.signals import Signal

ConditionName = Literal["sepsis", "hf_decompensation", "copd_exacerbation", "hypoglycaemia"]
Comorbidity = Literal[
    "heart_failure",
    "copd",
    "type1_diabetes",
    "type2_diabetes",
    "diabetes",
    "ckd",
    "hypertension",
    "hypercapnic",
]
# Covariates a twin has at enrolment: allocation strata, subgroups and Cox adjustment use them.
Covariate = Literal[
    "age_band",
    "sex",
    "setting",
    "heart_failure",
    "copd",
    "diabetes",
    "ckd",
    "hypertension",
]
Comparator = Literal["<", "<=", ">", ">="]
_NAME = r"^[a-z][a-z0-9_]{0,39}$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Regimen(_Model):
    """A course of a drug: ``count`` doses every ``every_h`` hours, or the explicit ``doses``
    (a titration: ``[40, 80, 80]``). ``dose`` None is the drug's standard dose."""

    drug: Drug
    dose: float | None = Field(default=None, ge=0)
    count: int | None = Field(default=None, ge=1, le=500)  # None: 1 (or len(doses))
    every_h: float = Field(default=8.0, gt=0, le=24 * 14)
    doses: tuple[Annotated[float, Field(ge=0)], ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_way(self) -> Regimen:
        if self.doses is not None and (self.dose is not None or self.count is not None):
            raise ValueError("give either doses (a list) or dose and count, not both")
        return self

    def amounts(self) -> list[float | None]:
        if self.doses is not None:
            return list(self.doses)
        return [self.dose] * (self.count or 1)

    def interventions(self, first: datetime) -> list[Intervention]:
        step = timedelta(hours=self.every_h)
        return [Intervention(first + k * step, self.drug, d) for k, d in enumerate(self.amounts())]

    @property
    def course_h(self) -> float:
        """Hours from the first dose until the course no longer covers (last dose + interval)."""
        return len(self.amounts()) * self.every_h


class Criteria(_Model):
    """Who qualifies: age range, sex, setting, comorbidities required (all) and excluded (any)."""

    age: tuple[float, float] = (18.0, 120.0)
    sex: Literal["any", "female", "male"] = "any"
    setting: Literal["any", "ward", "home"] = "any"
    require: tuple[Comorbidity, ...] = ()
    exclude: tuple[Comorbidity, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Criteria:
        lo, hi = self.age
        if not 0 <= lo <= hi:
            raise ValueError(f"age must be [low, high] with 0 <= low <= high, got {list(self.age)}")
        both = set(self.require) & set(self.exclude)
        if both:
            raise ValueError(f"comorbidities both required and excluded: {sorted(both)}")
        return self


class Population(_Model):
    """Who is enrolled: ``size`` twins meeting ``include``, from a cohort with this case mix."""

    size: int = Field(ge=2, le=2_000_000)
    home_fraction: float = Field(default=0.3, ge=0, le=1)
    risk: dict[ConditionName, Annotated[float, Field(ge=0, le=1000)]] = Field(default_factory=dict)
    include: Criteria = Criteria()


class Design(_Model):
    """Allocation. ``paired``: every twin runs under every arm with common random numbers.
    ``randomised``: each twin gets one arm by seeded, stratified, permuted-block allocation."""

    kind: Literal["paired", "randomised"] = "paired"
    control: str
    strata: tuple[Covariate, ...] = ()
    block_size: int | None = Field(default=None, ge=1, le=1000)
    shard_size: int | None = Field(default=None, ge=1, le=100_000)


class _Arm(_Model):
    name: str = Field(pattern=_NAME)
    description: str = Field(default="", max_length=500)
    ratio: int = Field(default=1, ge=1, le=20)
    usual_care: bool | None = None  # simulated clinicians in the background (None: trial default)


class UsualCareArm(_Arm):
    kind: Literal["usual_care"] = "usual_care"


class NoTreatmentArm(_Arm):
    kind: Literal["none"] = "none"


class ProtocolArm(_Arm):
    """The regimen from the true onset of ``condition`` plus ``delay_h`` (idealised)."""

    kind: Literal["protocol"] = "protocol"
    condition: ConditionName
    delay_h: float = Field(default=0.0, ge=0, le=24 * 30)
    regimen: Regimen


class ScheduleArm(_Arm):
    """The regimen from ``start_h`` after enrolment for every twin meeting ``eligible``."""

    kind: Literal["schedule"] = "schedule"
    eligible: Criteria = Criteria()
    start_h: float = Field(default=0.0, ge=0, le=24 * 60)
    regimen: Regimen


class _Reactive(_Arm):
    """Arms that decide while the trial runs, from what the stream delivered."""

    review_every_min: float = Field(default=5.0, gt=0, le=1440)
    response_delay_min: float = Field(default=30.0, ge=0, le=24 * 60)
    adherence: float = Field(default=1.0, ge=0, le=1)
    max_courses: int = Field(default=1, ge=1, le=50)
    regimen: Regimen


class SignalCondition(_Model):
    signal: Signal
    op: Comparator
    value: float


class SignalRuleArm(_Reactive):
    """The regimen once every condition holds on the latest clean observed values (each no
    older than ``max_age_min``)."""

    kind: Literal["signal_rule"] = "signal_rule"
    when: tuple[SignalCondition, ...] = Field(min_length=1)
    max_age_min: float = Field(default=15.0, gt=0, le=1440)


class ForecasterSpec(_Model):
    """The risk model of a monitoring arm. ``tft``: the trained TFT checkpoint at ``path``
    (``models.fastpath``); ``news2_trend``: the pipeline-only stand-in (``forecaster.py``).
    ``fallback``: used, and reported, when the TFT checkpoint cannot be loaded."""

    kind: Literal["tft", "news2_trend"]
    path: str | None = None
    backend: Literal["auto", "lean", "torchscript", "torch", "onnx"] = "auto"
    fallback: Literal["news2_trend"] | None = None


class MonitoringArm(_Reactive):
    """The regimen when the alert policy (the production rules, or the arm's own) fires a
    notification of a rule in ``act_on`` (default: any rule), as seen through the twin core."""

    kind: Literal["monitoring"] = "monitoring"
    alert_policy: AlertPolicy = DEFAULT_POLICY  # "default": the production rules
    act_on: tuple[str, ...] = ()
    forecaster: ForecasterSpec | None = None
    review_every_min: float = Field(default=5.0, gt=0, le=60)

    @field_validator("alert_policy", mode="before")
    @classmethod
    def _default_policy(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "default":
            raise ValueError(f"alert_policy is 'default' or a mapping with rules, got {value!r}")
        return DEFAULT_POLICY if value == "default" else value

    @property
    def policy(self) -> AlertPolicy:
        return self.alert_policy

    @model_validator(mode="after")
    def _rules(self) -> MonitoringArm:
        names = {r.name for r in self.policy.rules if r.enabled}
        unknown = sorted(set(self.act_on) - names)
        if unknown:
            raise ValueError(f"act_on names rules the alert policy does not have: {unknown}")
        acting = [
            r for r in self.policy.rules if r.enabled and (not self.act_on or r.name in self.act_on)
        ]
        needs = [r.name for r in acting if isinstance(r, ForecastRiskRule)]
        if needs and self.forecaster is None:
            raise ValueError(f"forecast rules {needs} need a forecaster (kind tft or news2_trend)")
        return self


Arm = Annotated[
    UsualCareArm | NoTreatmentArm | ProtocolArm | ScheduleArm | SignalRuleArm | MonitoringArm,
    Field(discriminator="kind"),
]
POPULATION_KINDS = ("usual_care", "none", "protocol", "schedule")  # batch path, no loop


class Endpoints(_Model):
    """``condition``: the episodes whose critical events and treatment are counted (``any``:
    every condition). Death is all-cause. ``drugs``: the drugs counted as trial treatment
    (default: those of the arms' regimens). ``glucose_tir``: CGM time in range 70-180 mg/dL
    (needs the signals: population arms then run several times slower)."""

    condition: ConditionName | Literal["any"] = "any"
    primary: Literal["critical", "death"] = "critical"
    drugs: tuple[Drug, ...] = ()
    glucose_tir: bool = False


class Analysis(_Model):
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    subgroups: tuple[Covariate, ...] = (
        "age_band",
        "sex",
        "setting",
        "heart_failure",
        "copd",
        "diabetes",
        "ckd",
    )
    comparisons: tuple[tuple[str, str], ...] = ()  # (arm, reference); default: arm vs control
    adjust: tuple[Covariate, ...] = ()  # covariates of the Cox model (besides the arm)


class TrialSpec(_Model):
    version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    title: str = Field(default="", max_length=300)
    seed: int = Field(ge=0, le=2**63 - 1)
    days: float = Field(gt=0, le=60)
    start: datetime = DEFAULT_START
    background_usual_care: bool = False
    population: Population
    design: Design
    arms: tuple[Arm, ...] = Field(min_length=1)
    endpoints: Endpoints = Endpoints()
    analysis: Analysis = Analysis()

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("start needs a UTC offset, e.g. 2026-01-05T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrialSpec:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique: {dupes}")
        if self.design.control not in names:
            raise ValueError(f"design.control {self.design.control!r} is not an arm: {names}")
        for arm, ref in self.analysis.comparisons:
            if arm not in names or ref not in names or arm == ref:
                raise ValueError(f"comparison {[arm, ref]} must name two different arms")
        if self.design.kind == "paired":
            if any(a.ratio != 1 for a in self.arms):
                raise ValueError("ratio applies to randomised designs only (paired: every arm)")
            if self.design.strata or self.design.block_size:
                raise ValueError("strata and block_size apply to randomised designs only")
        else:
            if len(self.arms) < 2:
                raise ValueError("a randomised design needs at least two arms")
            total = sum(a.ratio for a in self.arms)
            if self.design.block_size is not None and self.design.block_size % total:
                raise ValueError(
                    f"block_size {self.design.block_size} must be a multiple of the sum of the"
                    f" arms' ratios ({total})"
                )
        return self

    # ---- derived ----------------------------------------------------------------------

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise SpecError(f"no arm named {name!r}")

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    def uses_usual_care(self, arm: Arm) -> bool:
        if arm.kind == "usual_care":
            return True
        if arm.kind == "none":
            return False
        return self.background_usual_care if arm.usual_care is None else arm.usual_care

    def block_size(self) -> int:
        total = sum(a.ratio for a in self.arms)
        return self.design.block_size or 2 * total

    def shard_size(self, arm: Arm) -> int:
        if self.design.shard_size is not None:
            return self.design.shard_size
        return 1000 if arm.kind in POPULATION_KINDS else 16

    def comparisons(self) -> list[tuple[str, str]]:
        if self.analysis.comparisons:
            return [tuple(c) for c in self.analysis.comparisons]  # type: ignore[misc]
        return [(a, self.design.control) for a in self.arm_names if a != self.design.control]

    def trial_drugs(self) -> tuple[Drug, ...]:
        if self.endpoints.drugs:
            return self.endpoints.drugs
        found: list[Drug] = []
        for a in self.arms:
            regimen = getattr(a, "regimen", None)
            if regimen is not None and regimen.drug not in found:
                found.append(regimen.drug)
        return tuple(found)

    def digest(self) -> str:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- loading ---------------------------------------------------------------------------


def parse_spec(data: Any, source: str = "trial spec") -> TrialSpec:
    """Validate a mapping (parsed YAML or JSON) into a ``TrialSpec`` or raise ``SpecError``."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: the top level must be a mapping of fields, got {type(data).__name__}"
        )
    try:
        return TrialSpec.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(err, data) for err in exc.errors(include_url=False)]
        n = len(lines)
        head = f"{source} is invalid ({n} problem{'s' if n != 1 else ''}):"
        raise SpecError("\n  - ".join([head, *lines])) from None


def load_spec(path: str | Path) -> TrialSpec:
    """Read and validate a YAML trial specification."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read trial spec {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{p} is not valid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{p} is not valid YAML: {exc}") from None
    return parse_spec(data, str(p))


_TAGS = {"usual_care", "none", "protocol", "schedule", "signal_rule", "monitoring"}
_RULE_TAGS = {"news2_band", "news2_single_parameter", "qsofa", "forecast_risk", "sustained"}


def _describe(err: Any, data: dict[str, Any]) -> str:
    """``arms[1] 'news2'.regimen.drug: Input should be ... (got 'aspirin')``."""
    parts: list[str] = []
    node: Any = data
    loc = list(err["loc"])
    for i, key in enumerate(loc):
        if isinstance(key, int):
            label = f"[{key}]"
            item = node[key] if isinstance(node, list | tuple) and key < len(node) else None
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                label += f" {item['name']!r}"
            parts.append(label)
            node = item
            continue
        # Union members are named in the location; the reader knows the kind from the file.
        if key in _TAGS | _RULE_TAGS and i > 0 and isinstance(loc[i - 1], int):
            continue
        if key == "[key]" or str(key).startswith("function-"):
            continue  # pydantic's names for dict keys and validators: not the reader's
        parts.append(("." if parts else "") + str(key))
        node = node.get(key) if isinstance(node, dict) else None
    where = re.sub(r"^\.", "", "".join(parts)) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    got = ""
    if err["type"] not in ("missing", "value_error", "assertion_error") and "input" in err:
        shown = repr(err["input"])
        got = f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
    return f"{where}: {msg}{got}"

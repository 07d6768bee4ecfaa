"""Human-readable reference tables generated from the code (docs/signals.md is this output)."""

from __future__ import annotations

from twin.signals import LOINC_TO_SIGNAL, SIGNALS, UNIT_ALIASES, UNIT_CONVERSIONS


def signals_markdown() -> str:
    lines = [
        "# Signals the twin carries",
        "",
        "Generated from `twin/signals.py` by `python -m twin.reference`; a test keeps it in sync.",
        "",
        "| signal | kind | canonical unit | accepted units | LOINC | plausible range "
        "(outside: artifact) | stale after | window |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sig, spec in SIGNALS.items():
        codes = ", ".join(c for c, s in LOINC_TO_SIGNAL.items() if s is sig)
        units = ", ".join(f"`{u}`" for u in UNIT_CONVERSIONS[sig])
        window = f"{spec.aggregate} per bin" if spec.windowed else "-"
        lines.append(
            f"| {sig.value} | {spec.kind} | `{spec.unit}` | {units} | {codes} | "
            f"{spec.plausible_min:g} - {spec.plausible_max:g} | {spec.stale_after_s // 3600} h | "
            f"{window} |"
        )
    lines += [
        "",
        "Non-UCUM spellings mapped explicitly (anything else is rejected as `unknown_unit`):",
        "",
        ", ".join(f"`{k}` -> `{v}`" for k, v in UNIT_ALIASES.items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.stdout.write(signals_markdown())

"""The monthly savings report, in four rooms.

- `types`: the report as typed data (`Report`, `Figures`, `Row`); money and shares stay Decimal.
- `building`: `report_build` computes a month's `Report` from the metrics selectors.
- `formats`: the report as JSON (also its stored snapshot), CSV and a plain-text table, and back
  from JSON; the only place a figure becomes text for a machine.
- `selectors`: `report_get` reads a finished month's snapshot or builds the figures live; it never writes.
- `services`: storing a finished month's snapshot, regenerating it, emailing it.
"""

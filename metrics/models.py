"""Rollups of the call ledger and monthly savings snapshots.

Pages and reports read `DailyRollup`, never the raw ledger: one row per UTC day, provider, model,
agent, user, team, API key and local/cloud, with sums that add up across rows (calls, tokens, money) and a
fixed-bucket latency histogram, so any period's p50/p95/p99 is a sum of columns and a lookup.
"""

from django.conf import settings
from django.db import models

from routing.models import Provider

# Upper bounds (exclusive, in ms) of the latency buckets: ten per decade (the R10 series) from
# 10 ms to 1,000 s, so a percentile read back from the histogram is off by at most one bucket
# (about 26%) before interpolation, and far less after it. Bucket i counts latencies in
# [LATENCY_BOUNDS_MS[i-1], LATENCY_BOUNDS_MS[i]); the last bucket counts everything from 1,000 s up.
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    *(int(decade * step) for decade in (10, 100, 1_000, 10_000, 100_000) for step in _R10),
    1_000_000,
)
LATENCY_BUCKETS = len(LATENCY_BOUNDS_MS) + 1
LATENCY_FIELDS: tuple[str, ...] = tuple(f"lat_{i:02d}" for i in range(LATENCY_BUCKETS))


class RollupFigures(models.Model):
    """The sums every rollup level keeps; they add up across rows, so any level sums to any coarser one.

    Latency, the histogram and the tokens-per-second inputs describe successful calls only (the
    time an answer took); failures show up in `failures` and the error rate instead.
    `runs` counts each agent run once, on the row holding its first ledger entry, so it adds up;
    so do the run's quality-check counts. The failed-check figures and savings read the run's
    `quality_ok` (agents.AgentRun) through the ledger row's run id.
    """

    is_local = models.BooleanField()

    calls = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0, help_text="Attempts the provider answered with an error.")
    unknown_calls = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Attempts whose outcome is not known: in flight, or their worker was lost."
    )
    cancelled_calls = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Attempts cut by their caller (a cancelled run)."
    )
    runs = models.PositiveIntegerField(default=0, help_text="Agent runs whose first ledger entry is in this row.")
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0, help_text="Sum of known costs.")
    baseline_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    savings_usd = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        default=0,
        help_text="Baseline minus cost, over successful calls whose run did not fail its quality check "
        "(where both are known).",
    )
    failed_check_calls = models.PositiveIntegerField(
        default=0, help_text="Successful calls whose run failed its quality check."
    )
    failed_check_usd = models.DecimalField(
        max_digits=20, decimal_places=10, default=0, help_text="Baseline minus cost of those calls (not savings)."
    )
    checks_passed = models.PositiveIntegerField(default=0, help_text="Runs counted here whose answer passed its check.")
    checks_failed = models.PositiveIntegerField(default=0, help_text="Runs counted here whose answer failed its check.")
    checks_skipped = models.PositiveIntegerField(default=0, help_text="Runs counted here that succeeded with no check.")
    unpriced_calls = models.PositiveIntegerField(default=0, help_text="Calls recorded with no price in force.")
    latency_sum_ms = models.BigIntegerField(default=0)
    gen_completion_tokens = models.BigIntegerField(default=0, help_text="Completion tokens of successful calls.")
    gen_ms = models.BigIntegerField(default=0, help_text="Generation time of successful calls (latency minus TTFT).")

    class Meta:
        abstract = True


for _name in LATENCY_FIELDS:
    # One column per bucket: SUM() over columns is what keeps percentiles fast at any scale.
    RollupFigures.add_to_class(_name, models.PositiveIntegerField(default=0))


class DailyRollup(RollupFigures):
    """The ledger summed per UTC day, provider, model, agent, user, team, API key and local/cloud: the finest level."""

    day = models.DateField()
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=120)
    agent = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The ledger row's team and API key (accounts): what the pages and the report filter and break
    # down by, with the source (read from `agent`, routing.sources).
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        indexes = [
            models.Index(fields=["day"]),
            models.Index(fields=["provider", "day"]),
            models.Index(fields=["agent", "day"]),
            models.Index(fields=["user", "day"]),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.provider_id}/{self.model_name} {self.agent or '-'}: {self.calls} calls"


class DailyModelRollup(RollupFigures):
    """DailyRollup summed over agents and users: day-by-day figures per provider and model."""

    day = models.DateField(db_index=True)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=120)

    def __str__(self) -> str:
        return f"{self.day} {self.provider_id}/{self.model_name}: {self.calls} calls"


class DailyPeopleRollup(RollupFigures):
    """DailyRollup summed over providers and models: day-by-day figures per agent, user, team and key."""

    day = models.DateField(db_index=True)
    agent = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"{self.day} {self.agent or '-'} user={self.user_id}: {self.calls} calls"


class MonthlyRollup(RollupFigures):
    """DailyRollup summed over each UTC month: what reports and whole-month ranges read."""

    month = models.DateField(db_index=True, help_text="The first day of the month.")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=120)
    agent = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.provider_id}/{self.model_name} {self.agent or '-'}: {self.calls} calls"


class RollupState(models.Model):
    """Where `rollup_refresh` got to: one row."""

    last_ledger_id = models.BigIntegerField(default=0, help_text="Every ledger row up to this id has been rolled up.")
    last_started_at = models.DateTimeField(null=True, blank=True, help_text="When the last finished refresh began.")
    runs_below = models.BigIntegerField(
        default=0, help_text="Every agent run with a lower id had ended when RunRollup was last brought up to date."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Rollups up to ledger #{self.last_ledger_id}"


class RollupDay(models.Model):
    """What a day's rollup rows were summed from: that day's ledger rows with an id up to
    `ledger_high`, `ledger_rows` of them. The selectors use it to read a day still open from its
    rollups plus the few ledger rows above `ledger_high` (see metrics.coverage.rollup_coverage)."""

    day = models.DateField(primary_key=True)
    ledger_high = models.BigIntegerField()
    ledger_rows = models.PositiveIntegerField()
    # Of those, the rows not finished when summed (in flight, or unknown): completing one changes
    # the day's figures in place, under the same id, which only this count can show.
    unfinished_rows = models.PositiveIntegerField(default=0, db_default=0)
    refresh_started_at = models.DateTimeField(help_text="When the refresh that summed it began.")

    def __str__(self) -> str:
        return f"{self.day}: {self.ledger_rows} ledger rows up to #{self.ledger_high}"


class RunRollup(models.Model):
    """Agent runs that ended (failed or cancelled) before any provider call, per UTC day they were
    created, agent and user: the runs the ledger cannot show (see metrics.runs)."""

    day = models.DateField(db_index=True)
    agent = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    runs_without_calls = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.day} {self.agent or '-'} user={self.user_id}: {self.runs_without_calls} runs without calls"


class MonthlyReport(models.Model):
    """A finished month's savings report, frozen: later price or ledger changes do not alter it."""

    month = models.DateField(unique=True, help_text="The first day of the month (UTC).")
    generated_at = models.DateTimeField()
    data = models.JSONField()

    class Meta:
        ordering = ["-month"]

    def __str__(self) -> str:
        return f"Savings report {self.month:%Y-%m}"

import io

from django.core.management import call_command

from metrics.models import DailyRollup


def test_it_brings_the_rollups_up_to_date_and_says_how_far(add_entry):
    entry = add_entry()
    out = io.StringIO()

    call_command("rollup_refresh", stdout=out)

    assert DailyRollup.objects.get().calls == 1
    assert f"ledger covered up to #{entry.pk}" in out.getvalue()


def test_it_recomputes_everything_with_full(add_entry):
    add_entry()
    call_command("rollup_refresh", stdout=io.StringIO())
    DailyRollup.objects.update(calls=99)  # damage that no watermark would notice

    call_command("rollup_refresh", "--full", stdout=io.StringIO())

    assert DailyRollup.objects.get().calls == 1

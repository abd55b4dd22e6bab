"""`manage.py api_key_create USERNAME` prints a new key (the only time it is shown) that the API accepts."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey
from accounts.services import key_authenticate
from tests.agents.views_helpers import make_user

pytestmark = pytest.mark.django_db


def test_it_prints_a_key_for_the_user():
    ana = make_user("ana")
    out = StringIO()

    call_command("api_key_create", "ana", "--name", "script", stdout=out)

    assert key_authenticate(out.getvalue().strip()).user == ana
    assert ApiKey.objects.get().name == "script"


def test_it_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("api_key_create", "nobody", stdout=StringIO())

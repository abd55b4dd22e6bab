"""Forms for the task pages: they check the shape of the input; the services decide the rest."""

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator

from agents.models import Agent, RunStatus
from routing.rules import capability_validator


def _enabled_agents():
    return Agent.objects.filter(enabled=True)


def _limit_length(field: forms.Field, limit: int, what: str) -> None:
    # Read when the form is built, not at import, so the limit always follows the setting.
    message = f"The {what} is too long: at most {limit:,} characters (it has %(show_value)s)."
    field.validators.append(MaxLengthValidator(limit, message=message))
    field.help_text = f"Up to {limit:,} characters."


def _not_blank(text: str, message: str) -> str:
    if not text.strip():
        raise ValidationError(message)
    return text


class AgentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Agent) -> str:
        return f"{obj.name}: {obj.role}"


class AgentMultipleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Agent) -> str:
        return f"{obj.name}: {obj.role}"


class RunSubmitForm(forms.Form):
    agent = AgentChoiceField(
        queryset=Agent.objects.none(),
        to_field_name="slug",
        empty_label="Choose an agent",
        error_messages={"required": "Choose an agent.", "invalid_choice": "That agent does not exist or is disabled."},
    )
    prompt = forms.CharField(
        strip=False,  # leading indentation can matter in a prompt that is code
        widget=forms.Textarea(attrs={"rows": 10, "placeholder": "What should the agent do?"}),
        error_messages={"required": "Write a prompt."},
    )
    capability = forms.CharField(
        required=False,
        validators=[capability_validator],
        help_text="Optional: ask for providers with this capability, e.g. code_generation.",
    )
    max_tokens = forms.IntegerField(
        required=False, min_value=1, max_value=1_000_000, help_text="Optional: cap the answer's length in tokens."
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = _enabled_agents()
        limit = settings.SWITCHYARD_MAX_PROMPT_CHARS
        _limit_length(self.fields["prompt"], limit, "prompt")

    def clean_prompt(self) -> str:
        return _not_blank(self.cleaned_data["prompt"], "Write a prompt.")


class WorkflowSubmitForm(forms.Form):
    feature = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "placeholder": "Describe the feature for the whole team."}),
        error_messages={"required": "Describe the feature."},
    )
    agents = AgentMultipleChoiceField(
        queryset=Agent.objects.none(),
        to_field_name="slug",
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "required": "Choose at least one agent.",
            "invalid_choice": "%(value)s is not an enabled agent.",
        },
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agents"].queryset = _enabled_agents()
        if not self.is_bound:
            self.initial.setdefault("agents", [agent.slug for agent in _enabled_agents()])
        _limit_length(self.fields["feature"], settings.SWITCHYARD_MAX_PROMPT_CHARS, "feature description")

    def clean_feature(self) -> str:
        return _not_blank(self.cleaned_data["feature"], "Describe the feature.")


class RunFilterForm(forms.Form):
    """The runs list's filters; every field is optional and a bad value is reported, not ignored."""

    agent = forms.ModelChoiceField(
        queryset=Agent.objects.all(), to_field_name="slug", required=False, empty_label="any agent"
    )
    status = forms.ChoiceField(choices=[("", "any status"), *RunStatus.choices], required=False)
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(), to_field_name="username", required=False, empty_label="anyone"
    )
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, can_filter_users: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if can_filter_users:
            self.fields["user"].queryset = get_user_model().objects.order_by("username")
        else:
            del self.fields["user"]

    def clean(self) -> dict:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise ValidationError({"until": "Must not be before the start date."})
        return data


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Show a service's ValidationError on the form: on its field when the form has one, else on top."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)

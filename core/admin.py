"""The Django admin is where admins manage users and their roles."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from core.models import ApiToken, AuditEvent
from core.roles import ROLES, VIEWER, role_of, user_set_role
from core.services import audit_record

User = get_user_model()
ROLE_CHOICES = [(role, role.capitalize()) for role in ROLES]


class RoleChangeForm(UserChangeForm):
    role = forms.ChoiceField(choices=ROLE_CHOICES, help_text="Viewers read; operators act; admins manage users.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].initial = role_of(self.instance) or VIEWER


class RoleCreationForm(UserCreationForm):
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=VIEWER)


admin.site.unregister(User)


@admin.register(User)
class PerfpilotUserAdmin(UserAdmin):
    form = RoleChangeForm
    add_form = RoleCreationForm
    list_display = ("username", "email", "role", "is_active", "last_login")
    list_filter = ("is_active", "groups")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("role", "is_active")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("username", "role", "password1", "password2")}),)

    @admin.display(description="Role")
    def role(self, obj) -> str:
        return role_of(obj) or "—"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        role = form.cleaned_data.get("role")
        if role:
            user_set_role(user=obj, role=role)
            audit_record(
                actor=request.user,
                via="ui",
                action="user.set_role",
                object_repr=obj.get_username(),
                detail={"role": role},
            )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    fields = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("name", "prefix", "user", "created_at", "last_used_at")

    def has_add_permission(self, request) -> bool:
        return False  # tokens are created in Settings or by `create_api_token`, where the secret is shown


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_name", "via", "action", "object_repr", "result")
    list_filter = ("via", "result", "action")
    search_fields = ("actor_name", "action", "object_repr")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

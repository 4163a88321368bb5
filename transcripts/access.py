"""Roles. Three groups decide who sees what: auditor, researcher, admin (superusers count as all)."""

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from rest_framework.permissions import BasePermission

AUDITOR = "auditor"
RESEARCHER = "researcher"
ADMIN = "admin"
ROLES = (AUDITOR, RESEARCHER, ADMIN)


def has_role(user, role: str) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    # Cached per user object: templates ask several times per page.
    if not hasattr(user, "_em_roles"):
        user._em_roles = set(user.groups.values_list("name", flat=True))
    return role in user._em_roles or (role != ADMIN and ADMIN in user._em_roles)


def with_role(users: QuerySet, role: str) -> QuerySet:
    """The users among `users` who have `role`: has_role's rule as one query."""
    roles = [role] if role == ADMIN else [role, ADMIN]
    return users.filter(Q(is_superuser=True) | Q(groups__name__in=roles)).distinct()


def is_researcher(user) -> bool:
    return has_role(user, RESEARCHER)


def is_auditor(user) -> bool:
    return has_role(user, AUDITOR)


def researcher_required(view: Callable) -> Callable:
    """Login is enforced by middleware; this adds the role check (403 for auditors)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not is_researcher(request.user):
            raise PermissionDenied("Researchers only.")
        return view(request, *args, **kwargs)

    return wrapper


class IsResearcher(BasePermission):
    def has_permission(self, request, view) -> bool:
        return is_researcher(request.user)


OWNER_OR_ADMIN = "Only the experiment's owner or an admin can launch, cancel, resume or retry it."


def may_run(user, experiment) -> bool:
    """Launching, cancelling, resuming and retrying spend an experiment's budget and change its run: its
    owner's or an admin's to do. An experiment defined from the command line has no owner: the admins'."""
    return has_role(user, ADMIN) or (experiment.created_by_id is not None and experiment.created_by_id == user.pk)


class MayRunExperiment(BasePermission):
    message = OWNER_OR_ADMIN

    def has_object_permission(self, request, view, obj) -> bool:
        return may_run(request.user, obj)


def roles(request: HttpRequest) -> dict:
    """Template context: what the current user may see."""
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {"is_researcher": is_researcher(user), "is_auditor": is_auditor(user)}

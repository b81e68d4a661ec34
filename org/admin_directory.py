"""The back office's "Import directory" page (Organisation → Users → Import directory): a CSV or
XLSX file of people and departments, a dry run by default, and the report by line
(org.directory; docs/operations.md, "Directory sync"). Routed from ``org.admin.UserAdmin``."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from org import directory
from org.models import User
from weiyu.errors import ServiceError


class DirectoryImportForm(forms.Form):
    """The file and the two choices; the dry run is ticked when the page opens."""

    file = forms.FileField(
        label=_("file"), help_text=_("A .csv (UTF-8) or .xlsx file with a header row.")
    )
    dry_run = forms.BooleanField(
        label=_("dry run: check and report, change nothing"), required=False, initial=True
    )
    disable_missing = forms.BooleanField(
        label=_("disable synced people who are not in the file"), required=False, initial=True
    )


def import_view(request: HttpRequest) -> HttpResponse:
    """``GET/POST /admin/org/user/import/``: the form; POST runs the import (or the dry run)
    and shows the report — created, updated, unchanged, disabled, and errors with their line.
    Administrators who may change users; others get 403. A file that cannot be read → 400
    with the form and the reason."""
    if not request.user.has_perm("org.change_user"):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": _("Import directory"),
        "opts": User._meta,
        "columns": ", ".join(directory.COLUMNS),
    }
    status = 200
    if request.method == "POST":
        form = DirectoryImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if upload.size > directory.MAX_BYTES:
                    raise ServiceError("invalid", str(_("The file is too large.")))
                rows = directory.read_table(name=upload.name, data=upload.read())
                context["report"] = directory.directory_import(
                    rows=rows,
                    dry_run=form.cleaned_data["dry_run"],
                    disable_missing=form.cleaned_data["disable_missing"],
                    actor=request.user,
                )
            except ServiceError as exc:
                form.add_error("file", exc.message)
                status = 400
        else:
            status = 400
    else:
        form = DirectoryImportForm()
    context["form"] = form
    return TemplateResponse(request, "admin/org/user/import.html", context, status=status)

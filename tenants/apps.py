from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = _("Tenants")

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from tenants import checks  # noqa: F401 - registers the deploy checks
        from tenants.models import Domain, Tenant
        from weiyu.tenant_hosts import routes_changed_on_commit

        # every process's host -> tenant cache follows a saved or deleted tenant or domain from
        # its next request (weiyu.tenant_hosts); QuerySet.update callers bump it themselves
        for model in (Tenant, Domain):
            post_save.connect(
                routes_changed_on_commit, sender=model, dispatch_uid=f"routes-{model}"
            )
            post_delete.connect(
                routes_changed_on_commit, sender=model, dispatch_uid=f"routes-{model}-delete"
            )

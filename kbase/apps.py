from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KbaseConfig(AppConfig):
    name = "kbase"
    verbose_name = _("Knowledge base")

    def ready(self) -> None:
        from kbase import demo
        from tenants.signals import demo_tenant_ready

        demo_tenant_ready.connect(demo.populate, dispatch_uid="kbase-demo")

        # the audit log (org.audit): knowledge bases and LLM providers — never the API key
        from kbase.models import KnowledgeBase, LlmProvider
        from org.audit import track

        track(KnowledgeBase)
        track(LlmProvider, exclude=("api_key",))

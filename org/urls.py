from django.urls import path

from org import api
from org.webhooks import api as webhooks

app_name = "org"

urlpatterns = [
    path("departments", api.DepartmentTreeApi.as_view(), name="department-tree"),
    path("directory", api.DirectoryListApi.as_view(), name="directory"),
    # directory sync for HR systems: idempotent upserts by external id (org.directory)
    path("people/<str:external_id>", api.PersonUpsertApi.as_view(), name="person"),
    path(
        "departments/<str:external_id>",
        api.DepartmentUpsertApi.as_view(),
        name="department-upsert",
    ),
    path("tokens", api.TokenListApi.as_view(), name="tokens"),
    path("tokens/<int:pk>", api.TokenDetailApi.as_view(), name="token"),
    path("me/language", api.MyLanguageApi.as_view(), name="my-language"),
    # alerts when away: preferences and this browser's web push subscription
    path("me/alerts", api.MyAlertsApi.as_view(), name="my-alerts"),
    path(
        "me/push-subscriptions",
        api.MyPushSubscriptionsApi.as_view(),
        name="my-push-subscriptions",
    ),
    # signed webhooks: endpoints, the delivery log, replay (docs/webhooks.md)
    path("webhooks", webhooks.WebhookListApi.as_view(), name="webhooks"),
    path("webhooks/<int:pk>", webhooks.WebhookDetailApi.as_view(), name="webhook"),
    path(
        "webhooks/<int:pk>/rotate-secret",
        webhooks.WebhookSecretRotateApi.as_view(),
        name="webhook-rotate-secret",
    ),
    path(
        "webhooks/<int:pk>/deliveries",
        webhooks.WebhookDeliveryListApi.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "webhooks/deliveries/<int:pk>/replay",
        webhooks.WebhookDeliveryReplayApi.as_view(),
        name="webhook-replay",
    ),
]

from django.urls import path

from kefu import views
from kefu.channels import views as channel_views
from org.account_views import SignInCodeView

app_name = "kefu"

urlpatterns = [
    path("", views.demo_site, name="demo-site"),
    path("widget.js", views.widget_js, name="widget-js"),
    path("widget/frame/", views.widget_frame, name="widget-frame"),
    path("api/v1/widget/session", views.WidgetSessionApi.as_view(), name="widget-session"),
    path("api/v1/widget/profile", views.WidgetProfileApi.as_view(), name="widget-profile"),
    path("api/v1/widget/identify", views.WidgetIdentifyApi.as_view(), name="widget-identify"),
    path("api/v1/widget/transcript", views.WidgetTranscriptApi.as_view(), name="widget-transcript"),
    path("api/v1/widget/files", views.WidgetFileUploadApi.as_view(), name="widget-files"),
    path("api/v1/widget/files/<int:pk>", views.WidgetFileApi.as_view(), name="widget-file"),
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/monitor/", views.monitor_page, name="monitor"),
    path(
        "inbox/monitor/conversations/<int:conversation_id>/",
        views.monitor_transcript,
        name="monitor-transcript",
    ),
    path("inbox/tokens/", views.tokens_page, name="tokens"),
    path("inbox/alerts/", views.alerts_page, name="alerts"),
    path("inbox/push-sw.js", views.push_worker_js, name="push-worker"),
    path("inbox/kanban/", views.kanban_page, name="kanban"),
    path(
        "inbox/conversations/<int:conversation_id>/print/",
        views.conversation_print,
        name="conversation-print",
    ),
    path("inbox/login/", views.InboxLoginView.as_view(), name="inbox-login"),
    path("inbox/login/code/", SignInCodeView.as_view(), name="inbox-login-code"),
    path("inbox/logout/", views.InboxLogoutView.as_view(), name="inbox-logout"),
    path("hooks/<slug:kind>/<str:key>", channel_views.channel_hook, name="channel-hook"),
    path(
        "api/v1/kefu/channels/<str:key>/messages",
        channel_views.api_channel_message,
        name="api-channel-message",
    ),
]

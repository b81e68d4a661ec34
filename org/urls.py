from django.urls import path

from org import api

app_name = "org"

urlpatterns = [
    path("departments", api.DepartmentTreeApi.as_view(), name="department-tree"),
    path("directory", api.DirectoryListApi.as_view(), name="directory"),
    path("tokens", api.TokenListApi.as_view(), name="tokens"),
    path("tokens/<int:pk>", api.TokenDetailApi.as_view(), name="token"),
    path("me/language", api.MyLanguageApi.as_view(), name="my-language"),
]

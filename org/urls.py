from django.urls import path

from org import api

app_name = "org"

urlpatterns = [
    path("departments", api.DepartmentTreeApi.as_view(), name="department-tree"),
    path("directory", api.DirectoryListApi.as_view(), name="directory"),
    path("me/language", api.MyLanguageApi.as_view(), name="my-language"),
]

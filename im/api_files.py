"""REST endpoints for files and stickers (docs/api.md §3). Session-cookie auth."""

from __future__ import annotations

from urllib.parse import quote

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from im.attachments import attachment_get_for_member, attachment_upload, is_inline
from im.models import Attachment, Sticker
from im.serializers import attachment_payload, sticker_payload
from weiyu.errors import ServiceError
from weiyu.schema import FILE

#: the browser may show it, never run it (stored XSS through uploads, DESIGN.md §7)
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=3600",
}


def _disposition(kind: str, name: str) -> str:
    return f"{kind}; filename*=UTF-8''{quote(name, safe='')}"


def serve_attachment(attachment: Attachment, *, thumbnail: bool = False) -> HttpResponse:
    """The attachment's file (or its thumbnail) with the safe headers of :func:`_serve`; the
    caller has checked access."""
    if thumbnail and attachment.thumbnail:
        content_type = "image/png" if attachment.thumbnail.name.endswith(".png") else "image/jpeg"
        return _serve(attachment.thumbnail, name=attachment.name, content_type=content_type)
    return _serve(attachment.file, name=attachment.name, content_type=attachment.content_type)


def _serve(file_field: object, *, name: str, content_type: str) -> HttpResponse:
    """The stored file: streamed from local disk, or a redirect to a short-lived signed S3 URL.
    Only images, audio and video are inline with their own type; the rest is a download."""
    inline = is_inline(content_type)
    served_type = content_type if inline else "application/octet-stream"
    disposition = _disposition("inline" if inline else "attachment", name)
    storage_name = file_field.name  # type: ignore[attr-defined]
    if hasattr(default_storage, "bucket_name"):  # S3: let the client fetch it directly
        url = default_storage.url(
            storage_name,
            parameters={
                "ResponseContentType": served_type,
                "ResponseContentDisposition": disposition,
            },
            expire=300,
        )
        response: HttpResponse = HttpResponseRedirect(url)
    else:
        response = FileResponse(default_storage.open(storage_name, "rb"), content_type=served_type)
        response["Content-Disposition"] = disposition
    for header, value in SAFE_HEADERS.items():
        response[header] = value
    return response


class FileUploadApi(APIView):
    """``POST /api/v1/im/files`` (multipart): ``file``, ``kind`` (image|voice|video|file),
    ``conversation_id`` (omit only for a group picture), optional ``duration_ms``.

    201 {attachment}. Errors: 400 ``invalid`` (type, empty, blocked, bad fields), 404
    ``not_found`` (not a member), 409 ``conversation_closed``, 413 ``too_large``.
    """

    parser_classes = [MultiPartParser, FormParser]

    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise ServiceError("invalid", _("Choose a file."), field="file")
        raw_id = request.data.get("conversation_id")
        conversation_id = None
        if raw_id not in (None, ""):
            if not str(raw_id).isdigit():
                raise ServiceError(
                    "invalid", _("conversation_id must be an integer."), field="conversation_id"
                )
            conversation_id = int(raw_id)
        attachment = attachment_upload(
            conversation_id=conversation_id,
            uploader_key=request.user.member_key,
            upload=upload,
            kind=request.data.get("kind"),
            duration_ms=request.data.get("duration_ms"),
        )
        return Response(attachment_payload(attachment), status=status.HTTP_201_CREATED)


class FileDownloadApi(APIView):
    """``GET /api/v1/im/files/<id>`` (``?thumb=1`` for an image's thumbnail): the file, to members
    of its conversation only (404 JSON otherwise). Served with ``nosniff``, a sandboxing CSP, and
    as a download unless it is an image, audio or video."""

    @extend_schema(responses=FILE)
    def get(self, request: Request, pk: int) -> HttpResponse:
        attachment = attachment_get_for_member(attachment_id=pk, member_key=request.user.member_key)
        return serve_attachment(attachment, thumbnail=bool(request.query_params.get("thumb")))


class StickerListApi(APIView):
    """``GET /api/v1/im/stickers`` → ``{"stickers": [{"id", "name", "pack", "url"}]}`` (active)."""

    def get(self, request: Request) -> Response:
        return Response(
            {"stickers": [sticker_payload(s) for s in Sticker.objects.filter(is_active=True)]}
        )


class StickerImageApi(APIView):
    """``GET /api/v1/im/stickers/<id>/image``: the sticker's image (any signed-in user)."""

    @extend_schema(responses=FILE)
    def get(self, request: Request, pk: int) -> HttpResponse:
        sticker = Sticker.objects.filter(pk=pk).first()
        if sticker is None:
            raise ServiceError("not_found", _("No such sticker."))
        import filetype

        with default_storage.open(sticker.image.name, "rb") as fh:
            head = fh.read(512)
        kind = filetype.guess(head)
        content_type = kind.mime if kind else "application/octet-stream"
        return _serve(sticker.image, name=f"{sticker.name}", content_type=content_type)


urlpatterns = [
    path("files", FileUploadApi.as_view(), name="file-upload"),
    path("files/<int:pk>", FileDownloadApi.as_view(), name="file-download"),
    path("stickers", StickerListApi.as_view(), name="sticker-list"),
    path("stickers/<int:pk>/image", StickerImageApi.as_view(), name="sticker-image"),
]

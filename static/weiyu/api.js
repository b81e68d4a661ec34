// HTTP for the inbox and the widget: JSON calls with Django's CSRF token, and file uploads with
// progress. Errors carry the server's `detail` as message, its `error` code and the status.
import { gettext, interpolate } from './i18n.js';

/** Django's CSRF token from its cookie ('' when there is none, e.g. a third-party iframe). */
export function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : '';
}

function failure(message, status, code) {
  return Object.assign(new Error(message), { status, code });
}

/**
 * JSON API call, same-origin with cookies. `body`: an object (sent as JSON) or FormData;
 * `headers`: more request headers (the widget's X-Visitor-Token).
 * Resolves with the parsed answer (null for 204); rejects with an Error whose message is the
 * server's `detail`, with `code` (the `error` field) and `status`, plus `retryAfter` (seconds)
 * on a 429.
 */
export async function api(method, path, body, headers = {}) {
  const opts = { method, headers: { Accept: 'application/json', ...headers }, credentials: 'same-origin' };
  const csrf = csrfToken();
  if (body instanceof FormData) {
    opts.body = body;
  } else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers['Content-Type'] = 'application/json';
  }
  if (method !== 'GET' && csrf) opts.headers['X-CSRFToken'] = csrf;
  const r = await fetch(path, opts);
  if (r.status === 204) return null;
  let data = null;
  try {
    data = await r.json();
  } catch (e) { /* not JSON */ }
  if (!r.ok) {
    const detail = data && data.detail != null && (typeof data.detail === 'string' ? data.detail : JSON.stringify(data.detail));
    const error = failure(detail || gettext('Something went wrong. Try again.'), r.status, data && data.error);
    if (r.status === 429) error.retryAfter = Number(r.headers.get('Retry-After')) || null;
    throw error;
  }
  return data;
}

/**
 * Upload a file; resolves with the attachment. `kind`: 'image', 'voice', 'video' or 'file';
 * `onProgress(0..1)` while it goes; `url`: the endpoint (staff: /api/v1/im/files, the widget:
 * /api/v1/widget/files), `fields`: more form fields (the widget's token). Rejects like api(),
 * plus `retryAfter` (seconds) on a 429.
 */
export function upload(file, { conversationId, kind, durationMs, onProgress, url = '/api/v1/im/files', fields = {} }) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append('file', file, file.name || 'file');
    form.append('kind', kind);
    if (conversationId != null) form.append('conversation_id', String(conversationId));
    if (durationMs != null) form.append('duration_ms', String(Math.round(durationMs)));
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    const csrf = csrfToken();
    if (csrf) xhr.setRequestHeader('X-CSRFToken', csrf);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (e) { /* not JSON */ }
      if (xhr.status === 201) {
        resolve(data);
        return;
      }
      const error = failure((data && data.detail) || gettext('The upload failed.'), xhr.status, data && data.error);
      if (xhr.status === 429) error.retryAfter = Number(xhr.getResponseHeader('Retry-After')) || null;
      reject(error);
    };
    xhr.onerror = () => reject(new Error(gettext('The upload failed.')));
    xhr.send(form);
  });
}

/** The message type for a chosen file, from its MIME type (the server checks the content). */
export function kindForFile(file) {
  const t = file.type || '';
  if (/^image\/(png|jpeg|gif|webp)$/.test(t)) return 'image';
  if (t.startsWith('video/')) return 'video';
  if (t.startsWith('audio/')) return 'voice';
  return 'file';
}

/** A size in bytes as "512 B", "1.5 KB", "3.2 MB" ('' for null). */
export function formatSize(bytes) {
  if (bytes == null) return '';
  if (bytes < 1024) return interpolate(gettext('%(n)s B'), { n: bytes }, true);
  if (bytes < 1024 * 1024) return interpolate(gettext('%(n)s KB'), { n: (bytes / 1024).toFixed(1) }, true);
  return interpolate(gettext('%(n)s MB'), { n: (bytes / 1024 / 1024).toFixed(1) }, true);
}

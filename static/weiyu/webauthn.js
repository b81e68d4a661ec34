// WebAuthn in the browser: the server's options (JSON, binary fields in base64url) to what
// navigator.credentials wants, and its answers back to JSON for org.securitykeys (py_webauthn
// reads this shape). Used by the security page and the sign-in code step.

/** base64url text → Uint8Array. */
export function fromBase64url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/** ArrayBuffer (or view) → base64url text without padding. */
export function toBase64url(buffer) {
  const bytes = new Uint8Array(buffer instanceof ArrayBuffer ? buffer : buffer.buffer);
  let raw = '';
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Whether this browser can use security keys at all. */
export function supported() {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;
}

function descriptors(list) {
  return (list || []).map((d) => ({ ...d, id: fromBase64url(d.id) }));
}

/** Register a key: creation options (JSON) → the new credential as JSON text. */
export async function createCredential(options) {
  const publicKey = {
    ...options,
    challenge: fromBase64url(options.challenge),
    user: { ...options.user, id: fromBase64url(options.user.id) },
    excludeCredentials: descriptors(options.excludeCredentials),
  };
  const cred = await navigator.credentials.create({ publicKey });
  const response = cred.response;
  return JSON.stringify({
    id: cred.id,
    rawId: toBase64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    clientExtensionResults: cred.getClientExtensionResults(),
    response: {
      clientDataJSON: toBase64url(response.clientDataJSON),
      attestationObject: toBase64url(response.attestationObject),
      transports: typeof response.getTransports === 'function' ? response.getTransports() : [],
    },
  });
}

/** Sign in with a key: request options (JSON) → the assertion as JSON text. */
export async function getAssertion(options) {
  const publicKey = {
    ...options,
    challenge: fromBase64url(options.challenge),
    allowCredentials: descriptors(options.allowCredentials),
  };
  const cred = await navigator.credentials.get({ publicKey });
  const response = cred.response;
  return JSON.stringify({
    id: cred.id,
    rawId: toBase64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    clientExtensionResults: cred.getClientExtensionResults(),
    response: {
      clientDataJSON: toBase64url(response.clientDataJSON),
      authenticatorData: toBase64url(response.authenticatorData),
      signature: toBase64url(response.signature),
      userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
    },
  });
}

/**
 * POST `fields` (with the form's CSRF token) to `url`, asking for JSON; resolves to
 * `{ok, status, body}` where body is the parsed JSON (or {} when the answer is not JSON).
 */
export async function postForm(url, form, fields) {
  const data = new FormData();
  data.append('csrfmiddlewaretoken', form.querySelector('[name=csrfmiddlewaretoken]').value);
  for (const [key, value] of Object.entries(fields)) data.append(key, value);
  const res = await fetch(url, {
    method: 'POST',
    body: data,
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
  });
  const body = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, body };
}

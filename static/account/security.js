// The security page's "Add a security key" (templates/org/security.html): ask the server for
// creation options, let the browser make the credential, send it back with the key's name.
// Messages come translated from the page's data attributes and the server's JSON `detail`.
import { createCredential, postForm, supported } from '../weiyu/webauthn.js';

const form = document.getElementById('key-add-form');
const errorBox = document.getElementById('key-error');

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
}

function showCodes(codes) {
  const list = document.getElementById('key-recovery-codes');
  list.replaceChildren(
    ...codes.map((code) => {
      const item = document.createElement('li');
      const el = document.createElement('code');
      el.textContent = code;
      item.append(el);
      return item;
    }),
  );
  form.hidden = true;
  document.getElementById('key-codes').hidden = false;
}

async function addKey(event) {
  event.preventDefault();
  errorBox.hidden = true;
  const name = form.elements.name.value.trim();
  if (!name) {
    showError(form.dataset.msgName);
    return;
  }
  if (!supported()) {
    showError(form.dataset.msgUnsupported);
    return;
  }
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const options = await postForm(form.dataset.optionsUrl, form, {});
    if (!options.ok) {
      showError(options.body.detail || form.dataset.msgFailed);
      return;
    }
    let credential;
    try {
      credential = await createCredential(options.body.publicKey);
    } catch {
      showError(form.dataset.msgCancelled);
      return;
    }
    const added = await postForm(form.dataset.addUrl, form, { name, credential });
    if (!added.ok) {
      showError(added.body.detail || form.dataset.msgFailed);
      return;
    }
    if (added.body.recovery_codes && added.body.recovery_codes.length) {
      showCodes(added.body.recovery_codes);
    } else {
      window.location.reload();
    }
  } finally {
    button.disabled = false;
  }
}

if (form) form.addEventListener('submit', addKey);

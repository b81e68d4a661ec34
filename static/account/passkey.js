// "Sign in with a passkey" on the sign-in pages (templates/kefu/inbox_login.html,
// templates/org/admin_login.html): no username, no password — the authenticator offers its
// passkeys for this site and verifies its user; the server says where to go next.
import { getAssertion, postForm, supported } from '../weiyu/webauthn.js';

const form = document.getElementById('passkey-form');
const button = document.getElementById('passkey-sign-in');
const errorBox = document.getElementById('passkey-error');

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
}

async function signIn() {
  errorBox.hidden = true;
  if (!supported()) {
    showError(form.dataset.msgUnsupported);
    return;
  }
  button.disabled = true;
  try {
    const options = await postForm(form.dataset.optionsUrl, form, {});
    if (!options.ok) {
      showError(options.body.detail || form.dataset.msgFailed);
      return;
    }
    let credential;
    try {
      credential = await getAssertion(options.body.publicKey);
    } catch {
      showError(form.dataset.msgCancelled);
      return;
    }
    const signed = await postForm(form.dataset.url, form, { credential, next: form.dataset.next });
    if (signed.ok && signed.body.redirect) {
      window.location.assign(signed.body.redirect);
      return;
    }
    showError(signed.body.detail || form.dataset.msgFailed);
  } finally {
    button.disabled = false;
  }
}

if (button) button.addEventListener('click', signIn);

// The sign-in code step with a security key (templates/org/login_code.html): options from the
// same address, the browser signs, the assertion goes back; on success the server says where to.
import { getAssertion, postForm, supported } from '../weiyu/webauthn.js';

const button = document.getElementById('use-key');
const form = document.getElementById('key-form');
const errorBox = document.getElementById('key-error');

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
}

async function useKey() {
  errorBox.hidden = true;
  if (!supported()) {
    showError(form.dataset.msgUnsupported);
    return;
  }
  button.disabled = true;
  try {
    const url = window.location.pathname;
    const options = await postForm(url, form, { action: 'key-options' });
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
    const signed = await postForm(url, form, { credential });
    if (signed.ok && signed.body.redirect) {
      window.location.assign(signed.body.redirect);
      return;
    }
    showError(signed.body.detail || form.dataset.msgFailed);
  } finally {
    button.disabled = false;
  }
}

if (button) button.addEventListener('click', useKey);

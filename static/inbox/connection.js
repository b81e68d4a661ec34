// The inbox's websocket (the shared WeiyuClient) and the connection line at the top.
import { WeiyuClient } from '../weiyu/client.js';
import { $ } from '../weiyu/dom.js';
import { gettext } from '../weiyu/i18n.js';
import { connectionText } from '../weiyu/thread.js';
import { dispatch, handle } from './frames.js';
import { config, emit, state } from './store.js';

/** The connection; null until connect() (called once every module has registered its frames). */
export let client = null;

export function connect() {
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  client = new WeiyuClient({ url: scheme + location.host + config.ws_path, onFrame: dispatch, onState });
}

function onState(connState) {
  const s = $('conn-status');
  s.dataset.state = connState;
  emit('connection', connState);
  if (connState === 'open') {
    s.textContent = '';
    s.hidden = true;
    return;
  }
  s.hidden = false;
  s.replaceChildren();
  s.textContent = connectionText(connState);
  if (connState === 'unauthorized') {
    s.append(
      (state.accountDisabled
        ? gettext('An administrator disabled your account.')
        : gettext('You have been signed out.')) + ' ',
    );
    const a = document.createElement('a');
    a.href = location.pathname; // the inbox page sends us to the login form
    a.textContent = gettext('Sign in again');
    s.append(a);
  }
}

handle('account.disabled', () => {
  state.accountDisabled = true; // the socket closes next (4401): say why
});

handle('session.ended', () => {
  // "log out everywhere" from another session: this one is over, go to the sign-in page
  location.assign(location.pathname);
});

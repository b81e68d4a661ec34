// The alerts page (/inbox/alerts/): "Enable notifications" registers the inbox's service worker,
// asks the browser for permission, subscribes with the platform's VAPID key (Push API) and sends
// the subscription to the server; "Turn off" unsubscribes and tells the server.
import { api } from '../weiyu/api.js';
import { $, pageConfig } from '../weiyu/dom.js';
import { gettext } from '../weiyu/i18n.js';

const config = pageConfig();
const status = $('push-status');
const enableBtn = $('push-enable');
const disableBtn = $('push-disable');

function say(text, state) {
  status.textContent = text;
  status.dataset.state = state;
}

/** base64url → bytes (the applicationServerKey). */
function keyBytes(b64) {
  const s = atob(b64.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

function sameKey(subscription) {
  const key = subscription.options && subscription.options.applicationServerKey;
  if (!key) return true;
  const mine = keyBytes(config.vapid_public_key);
  const theirs = new Uint8Array(key);
  return theirs.length === mine.length && theirs.every((b, i) => b === mine[i]);
}

async function current() {
  const registration = await navigator.serviceWorker.getRegistration(config.scope);
  return registration ? registration.pushManager.getSubscription() : null;
}

function showOn(on) {
  enableBtn.hidden = on;
  disableBtn.hidden = !on;
}

async function enable() {
  enableBtn.disabled = true;
  try {
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') {
      say(gettext('Notifications are blocked for this site: allow them in the browser’s site settings, then try again.'), 'blocked');
      return;
    }
    const registration = await navigator.serviceWorker.register(config.worker_url, { scope: config.scope });
    await navigator.serviceWorker.ready;
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription)) {
      await subscription.unsubscribe();
      subscription = null;
    }
    subscription = subscription || await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: keyBytes(config.vapid_public_key),
    });
    await api('POST', config.subscriptions_url, subscription.toJSON());
    say(gettext('Notifications are on in this browser.'), 'on');
    showOn(true);
  } catch (e) {
    say(e.message || gettext('This browser could not turn notifications on.'), 'error');
  } finally {
    enableBtn.disabled = false;
  }
}

async function disable() {
  disableBtn.disabled = true;
  try {
    const subscription = await current();
    if (subscription) {
      await api('DELETE', config.subscriptions_url, { endpoint: subscription.endpoint });
      await subscription.unsubscribe();
    }
    say(gettext('Notifications are off in this browser.'), 'off');
    showOn(false);
  } catch (e) {
    say(e.message || gettext('Something went wrong. Try again.'), 'error');
  } finally {
    disableBtn.disabled = false;
  }
}

if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) {
  say(gettext('This browser cannot show notifications from a website (on iPhone and iPad, add the inbox to the home screen first).'), 'unsupported');
  enableBtn.disabled = true;
} else {
  enableBtn.addEventListener('click', enable);
  disableBtn.addEventListener('click', disable);
  current().then((subscription) => {
    if (subscription && sameKey(subscription) && Notification.permission === 'granted'
      && config.endpoints.includes(subscription.endpoint)) {
      say(gettext('Notifications are on in this browser.'), 'on');
      showOn(true);
    }
  }).catch(() => {});
}

// Telling the agent: the toast line, desktop notifications while the inbox is in the background,
// the chime for a new visitor, the flash of a new list item, and the waiting-visitor reminder.
// (The bell with ticket notifications is part of tickets.js.)
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { previewText } from '../weiyu/render.js';
import { handle } from './frames.js';
import { state, titleOf } from './store.js';

let toastTimer = null;
/** Show `text` in the toast line for 5 s. */
export function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 5000);
}

/** Highlight a list item for a moment (a conversation that just arrived). */
export function flash(el) {
  el.classList.add('fresh');
  setTimeout(() => el.classList.remove('fresh'), 2500);
}

function desktop(title, options, onClick) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  if (document.visibilityState === 'visible') return;
  try {
    const n = new Notification(title, options);
    if (onClick) {
      n.onclick = () => {
        window.focus();
        onClick();
      };
    }
  } catch (e) { /* not allowed here */ }
}

/** A desktop notification of message `m` in `c` while the page is in the background; a click runs `open()`. */
export function notify(c, m, open) {
  desktop(titleOf(c), { body: previewText({ ...m, conversation_kind: c.kind }, state.me), tag: 'c' + c.id }, open);
}

// Permission is asked for on the first click anywhere, as browsers require a user gesture.
document.addEventListener('click', () => {
  if ('Notification' in window && Notification.permission === 'default') Notification.requestPermission().catch(() => {});
}, { once: true });

// A short two-tone chime (Web Audio, no file to load).
let audio = null;
function chime() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    const now = audio.currentTime;
    for (const [freq, at] of [[880, 0], [1320, 0.12]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.2, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.18);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.2);
    }
  } catch (e) { /* no audio here */ }
}

/** A new visitor conversation: the chime and, in the background, a desktop notification. */
export function announceAssignment(c, open) {
  chime();
  document.body.dataset.lastAssigned = c.id; // for tests and styling
  desktop(gettext('New conversation'), { body: titleOf(c), tag: 'a' + c.id }, open);
}

handle('session.reminder', (f) => {
  const text = interpolate(gettext('%(visitor)s has been waiting %(seconds)s s for your answer.'), { visitor: f.visitor.name, seconds: f.waiting_s }, true);
  toast(text);
  const c = state.convs.get(f.conversation_id);
  if (c && 'Notification' in window && Notification.permission === 'granted') {
    try {
      new Notification(titleOf(c), { body: text, tag: 'r' + c.id });
    } catch (e) { /* notifications blocked */ }
  }
});

// Message rendering shared by the widget and the inbox: the same DOM for a message, its time,
// sender and delivery state. Everything from the server goes in as text, never as HTML.
import { hhmm, fullTime } from './client.js';

// The JS catalog (/jsi18n/) defines gettext/interpolate; keep working without it.
if (typeof window.gettext !== 'function') window.gettext = (s) => s;
if (typeof window.interpolate !== 'function') {
  window.interpolate = (fmt, obj, named) =>
    named ? fmt.replace(/%\((\w+)\)s/g, (_, k) => String(obj[k])) : fmt.replace(/%s/g, () => String(obj.shift()));
}
const { gettext } = window;

const STATE_TEXT = {
  pending: gettext('sending…'),
  sent: gettext('sent'),
  delivered: gettext('delivered'),
  read: gettext('read'),
  failed: gettext('not sent'),
};

/** 'system', 'mine' or 'theirs', for the member key `me`. */
export function kindOf(m, me) {
  if (m.msg_type === 'system' || !m.sender || m.sender.type === 'system') return 'system';
  return m.sender.key === me ? 'mine' : 'theirs';
}

/** An empty `.msg` element: meta (sender, time), bubble with `.msg-text`, and `.msg-state` for own messages. */
export function buildMsg(kind, conversationId) {
  const el = document.createElement('div');
  el.className = 'msg ' + kind;
  if (conversationId != null) el.dataset.conversation = conversationId;
  if (kind !== 'system') {
    const meta = document.createElement('div');
    meta.className = 'msg-meta';
    const sender = document.createElement('span');
    sender.className = 'msg-sender';
    const time = document.createElement('time');
    time.className = 'msg-time';
    meta.append(sender, time);
    el.append(meta);
  }
  const bubble = document.createElement('div');
  bubble.className = 'msg-bubble';
  const text = document.createElement('div');
  text.className = 'msg-text';
  bubble.append(text);
  el.append(bubble);
  if (kind === 'mine') {
    const state = document.createElement('div');
    state.className = 'msg-state';
    el.append(state);
  }
  return el;
}

/** Local HH:MM, with the full timestamp as a tooltip. */
export function setMsgTime(el, iso) {
  const time = el.querySelector('.msg-time');
  if (time) {
    time.textContent = hhmm(iso);
    time.dateTime = iso || '';
    time.title = fullTime(iso);
  } else {
    el.title = fullTime(iso);
  }
}

export function fillMsg(el, { content, created_at, name }) {
  el.querySelector('.msg-text').textContent = content;
  setMsgTime(el, created_at);
  const sender = el.querySelector('.msg-sender');
  if (sender) sender.textContent = name || '';
}

/** state: 'pending' | 'sent' | 'delivered' | 'read' | 'failed'. */
export function setMsgState(el, state) {
  const s = el.querySelector('.msg-state');
  if (!s) return;
  el.dataset.state = state;
  s.textContent = STATE_TEXT[state];
}

/** How far a message got, from the peers' marks `{d: delivered_seq, r: read_seq}`. */
export function receiptOf(marks, seq) {
  if (marks && marks.r >= seq) return 'read';
  if (marks && marks.d >= seq) return 'delivered';
  return 'sent';
}

// Message rendering shared by the widget and the inbox: the same DOM for a message, its time,
// sender and delivery state, and the bodies of every message type (files, images, voice, video,
// stickers, @mentions). Everything from the server goes in as text or as attributes of media
// elements, never as HTML.
import { formatSize } from './api.js';
import { el } from './dom.js';
import { gettext, interpolate } from './i18n.js';
import { lineText } from './syslines.js';
import { formatDuration, fullTime, hhmm } from './time.js';

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

// ---- message bodies -----------------------------------------------------------------------
const preview = () => document.getElementById('image-preview');

export function openPreview(url, name) {
  const dlg = preview();
  const img = dlg.querySelector('img');
  img.src = url;
  img.alt = name || '';
  dlg.querySelector('.preview-name').textContent = name || '';
  dlg.querySelector('.preview-download').href = url;
  dlg.showModal();
}

/** Text with @mentions of `names` (member key -> name) highlighted. */
function mentionText(container, content, names) {
  const parts = [];
  const wanted = [...names].filter(Boolean).map((n) => '@' + n);
  if (!wanted.length) {
    container.textContent = content;
    return;
  }
  let rest = content;
  while (rest) {
    let at = -1;
    let hit = '';
    for (const w of wanted) {
      const i = rest.indexOf(w);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        hit = w;
      }
    }
    if (at < 0) {
      parts.push(document.createTextNode(rest));
      break;
    }
    if (at > 0) parts.push(document.createTextNode(rest.slice(0, at)));
    parts.push(el('span', 'mention', hit));
    rest = rest.slice(at + hit.length);
  }
  container.replaceChildren(...parts);
}

/**
 * Fill `.msg-text` of a message element for any message type. `ctx.nameOf(key)` gives member
 * names (for @mentions), `ctx.me` our key.
 */
export function fillBody(msgEl, m, ctx) {
  const box = msgEl.querySelector('.msg-text');
  box.replaceChildren();
  msgEl.classList.toggle('internal', !!m.internal);
  msgEl.classList.toggle('recalled', !!m.recalled);
  msgEl.dataset.type = m.msg_type;
  if (m.meta && m.meta.erased) {
    msgEl.classList.add('recalled');
    box.textContent = gettext('Removed at the customer’s request');
    return;
  }
  if (m.recalled) {
    box.textContent = m.sender && m.sender.key === ctx.me
      ? gettext('You recalled a message')
      : interpolate(gettext('%(name)s recalled a message'), { name: (m.sender && m.sender.name) || '' }, true);
    return;
  }
  const a = m.attachment;
  if (m.msg_type === 'image' && a) {
    const img = el('img', 'msg-image');
    img.src = a.thumbnail_url || a.url;
    img.alt = a.name;
    img.loading = 'lazy';
    if (a.width && a.height) {
      const scale = Math.min(1, 240 / Math.max(a.width, a.height));
      img.width = Math.round(a.width * scale);
      img.height = Math.round(a.height * scale);
    }
    const btn = el('button', 'msg-image-btn');
    btn.type = 'button';
    btn.title = gettext('View the picture');
    btn.append(img);
    btn.addEventListener('click', () => openPreview(a.url, a.name));
    box.append(btn);
  } else if (m.msg_type === 'voice' && a) {
    const audio = el('audio', 'msg-audio');
    audio.controls = true;
    audio.preload = 'none';
    audio.src = a.url;
    box.append(audio, el('span', 'msg-duration', formatDuration(a.duration_ms)));
  } else if (m.msg_type === 'video' && a) {
    const video = el('video', 'msg-video');
    video.controls = true;
    video.preload = 'metadata';
    video.src = a.url;
    box.append(video);
  } else if (m.msg_type === 'file' && a) {
    const card = el('a', 'file-card');
    card.href = a.url;
    card.download = a.name;
    card.append(el('span', 'file-icon', '📄'), el('span', 'file-name', a.name), el('span', 'file-size', formatSize(a.size)));
    box.append(card);
  } else if (m.msg_type === 'sticker' && m.sticker) {
    const img = el('img', 'msg-sticker');
    img.src = m.sticker.url;
    img.alt = m.sticker.name;
    img.title = m.sticker.name;
    box.append(img);
  }
  const content = m.msg_type === 'system' ? lineText(m) : m.content;
  if (content) {
    const text = el('div', 'msg-caption');
    const names = new Set();
    for (const key of m.mentions || []) {
      if (key === 'all') names.add(gettext('all'));
      else names.add(ctx.nameOf(key));
    }
    mentionText(text, content, names);
    if (box.childNodes.length) box.append(text);
    else mentionText(box, content, names);
  }
  const mentioned = (m.mentions || []).includes(ctx.me) || (m.mentions || []).includes('all');
  msgEl.classList.toggle('mentions-me', mentioned && !(m.sender && m.sender.key === ctx.me));
}

/** A one-line preview of a message for the conversation list. */
export function previewText(m, me) {
  if (!m) return '';
  if (m.meta && m.meta.erased) return gettext('Removed at the customer’s request');
  if (m.recalled || m.msg_type === 'recall') return gettext('A message was recalled');
  const label = {
    image: gettext('[Picture]'),
    voice: gettext('[Voice]'),
    video: gettext('[Video]'),
    file: gettext('[File]'),
    sticker: gettext('[Sticker]'),
  }[m.msg_type];
  const text = label ? (label + ' ' + (m.content || (m.attachment && m.attachment.name) || '')).trim() : lineText(m);
  if (m.internal) return interpolate(gettext('Note: %(text)s'), { text }, true);
  if (m.sender && m.sender.key === me) return interpolate(gettext('You: %(text)s'), { text }, true);
  if (m.sender && m.sender.type === 'agent' && m.conversation_kind === 'group') return `${m.sender.name}: ${text}`;
  return text;
}

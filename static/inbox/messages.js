// The selected conversation's messages: drawing them in order, pending sends, delivery and read
// marks ("read by N" in groups), recall, older history on scroll, the typing line, and the
// frames that bring messages.
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import {
  buildMsg,
  fillBody,
  fillMsg as fill,
  kindOf as kindOfMsg,
  receiptOf,
  setMsgState as setState,
  setMsgTime as setTime,
} from '../weiyu/render.js';
import {
  floorOf,
  nearBottom as nearBottomOf,
  olderLoader,
  placeMsg,
  scrollToBottom as scrollToBottomOf,
  typingText,
} from '../weiyu/thread.js';
import { client } from './connection.js';
import { dropConversation, markSelectedRead, resyncSoon, select } from './conversations.js';
import { handle } from './frames.js';
import { notify, toast } from './notifications.js';
import { config, emit, ingest, on, putConversation, selectedConversation, setPeer, state } from './store.js';

const list = $('messages');
const loader = $('history-loader');
const elBySeq = new Map(); // seq -> element, selected conversation only
const pendingEls = new Map(); // client_msg_id -> element, selected conversation only
let tie = 0;

const kindOf = (m) => kindOfMsg(m, state.me);
// Sorted by seq, pending last.
const place = (el, key) => placeMsg(list, loader, el, key);
const nearBottom = () => nearBottomOf(list);
export const scrollToBottom = () => scrollToBottomOf(list);

const bodyContext = {
  get me() {
    return state.me;
  },
  nameOf: (key) => state.names.get(key) || '',
};

function showMessage(m) {
  const kind = kindOf(m);
  let el = elBySeq.get(m.seq);
  if (!el && kind === 'mine' && m.client_msg_id && pendingEls.has(m.client_msg_id)) {
    el = pendingEls.get(m.client_msg_id);
    pendingEls.delete(m.client_msg_id);
  }
  if (m.msg_type === 'recall') return; // shown on the recalled message itself
  if (!el) el = buildMsg(kind);
  el.dataset.conversation = m.conversation_id;
  el.dataset.seq = m.seq;
  el.dataset.id = m.id;
  fill(el, { content: '', created_at: m.created_at, name: m.sender && m.sender.name });
  fillBody(el, m, bodyContext);
  if (m.sender && m.sender.type === 'robot') markRobot(el, m);
  if (kind === 'mine') {
    applyState(el, m.conversation_id, m.seq);
    addRecall(el, m);
  }
  markDelivery(el, m);
  elBySeq.set(m.seq, el);
  place(el, [m.seq, 0]);
  if (kind !== 'mine' && m.sender) state.typers.stop(m.conversation_id, m.sender.key);
}

/** Draw messages of the selected conversation (others wait in the store until selected). */
function showIfSelected(m) {
  if (m.conversation_id === state.selected) showMessage(m);
}

// A robot answer in the transcript: its sources and the visitor's rating, for the agent.
function markRobot(el, m) {
  el.classList.add('robot');
  const meta = (m.meta && m.meta.robot) || {};
  let note = el.querySelector('.robot-note');
  if (!note) {
    note = document.createElement('div');
    note.className = 'robot-note';
    el.append(note);
  }
  const parts = [];
  if (meta.sources && meta.sources.length) {
    parts.push(gettext('Source:') + ' ' + meta.sources.map((s) => s.title).join(', '));
  } else if (meta.suggestions && meta.suggestions.length) {
    parts.push(gettext('Offered:') + ' ' + meta.suggestions.map((s) => s.title).join(' | '));
  } else if (meta.reply_to && !meta.answered) {
    parts.push(gettext('Not answered'));
  }
  if (meta.feedback === 'helpful') parts.push(gettext('Rated helpful'));
  if (meta.feedback === 'not_helpful') parts.push(gettext('Rated not helpful'));
  note.textContent = parts.join(' · ');
  note.hidden = !parts.length;
}

// A reply to a messaging channel (Telegram, WeChat…): "not delivered: <reason>" and a Retry
// button when the vendor refused it or could not be reached (meta.delivery, docs/channels.md).
function markDelivery(el, m) {
  const d = m.meta && m.meta.delivery;
  let box = el.querySelector('.msg-delivery');
  if (!d || d.status === 'sent') {
    if (box) box.remove();
    return;
  }
  if (!box) {
    box = document.createElement('div');
    box.className = 'msg-delivery';
    el.append(box);
  }
  box.replaceChildren();
  box.dataset.status = d.status;
  const text = document.createElement('span');
  text.className = 'msg-delivery-text';
  if (d.status === 'failed') {
    text.textContent = interpolate(gettext('Not delivered: %(reason)s'), { reason: d.error || '' }, true);
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'msg-delivery-retry link-btn';
    retry.textContent = gettext('Retry');
    retry.addEventListener('click', () => {
      retry.disabled = true;
      api('POST', `/api/v1/kefu/deliveries/${d.id}/retry`).catch((e) => {
        retry.disabled = false;
        toast(e.message || gettext('Could not send it again. Try again.'));
      });
    });
    box.append(text, ' ', retry);
  } else {
    text.textContent = d.error ? gettext('Sending again…') : gettext('Sending…');
    box.append(text);
  }
}

// What the selected conversation's channel allows (session.channel.capabilities); null for
// conversations without one (team chats), where everything the inbox offers applies.
function capabilitiesOf(conversationId) {
  const c = state.convs.get(conversationId);
  return (c && c.session && c.session.channel && c.session.channel.capabilities) || null;
}

// Own messages get a "Recall" action while the tenant's recall window is open.
function addRecall(el, m) {
  const old = el.querySelector('.msg-recall');
  if (old) old.remove();
  const caps = capabilitiesOf(m.conversation_id);
  if (caps && !caps.recall && !m.internal) return; // the customer already has it at the vendor
  const age = Date.now() - Date.parse(m.created_at);
  const windowMs = (config.recall_window_s || 0) * 1000;
  if (m.recalled || m.msg_type === 'system' || !(age < windowMs)) return;
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'msg-recall link-btn';
  b.textContent = gettext('Recall');
  b.addEventListener('click', () => {
    b.disabled = true;
    client.recall(m.conversation_id, m.id).catch((e) => {
      b.disabled = false;
      toast(e.message && e.code !== 'disconnected' ? e.message : gettext('Could not recall the message. Try again.'));
    });
  });
  el.querySelector('.msg-meta').append(b);
  setTimeout(() => b.remove(), windowMs - age);
}

/** Show a message the client is sending (`item` from client.send) until its ack. */
export function showPending(item) {
  const el = buildMsg('mine');
  el.dataset.conversation = item.conversation_id;
  fill(el, { content: item.label || item.content, created_at: item.created_at, name: config.user.name });
  el.classList.toggle('internal', !!(item.extra && item.extra.internal));
  setState(el, 'pending');
  pendingEls.set(item.client_msg_id, el);
  place(el, [Infinity, ++tie]);
  return el;
}

/**
 * Show `messages` (a page around `seq` from the REST API) in the selected conversation
 * `conversationId`, and scroll to `seq`, highlighted for a moment.
 */
export function showAround(conversationId, messages, seq) {
  for (const m of messages) {
    if (!client.has(conversationId, m.seq)) ingest(m);
    showMessage((state.messages.get(conversationId) || new Map()).get(m.seq) || m);
  }
  const el = elBySeq.get(seq);
  if (el) {
    el.scrollIntoView({ block: 'center' });
    el.classList.add('hit');
    setTimeout(() => el.classList.remove('hit'), 3000);
  }
}

// ---- delivery and read marks --------------------------------------------------------------
// In groups "read by N" replaces delivered/read: counts come from receipts.fetch.
function applyState(el, conversationId, seq) {
  const c = state.convs.get(conversationId);
  if (!c || c.kind !== 'group') {
    setState(el, receiptOf(state.peerMarks.get(conversationId), seq));
    return;
  }
  const n = (state.readCounts.get(seq) || {}).read || 0;
  setState(el, n ? 'read' : 'sent');
  if (n) {
    const others = Math.max(0, (c.member_count || 0) - 1);
    el.querySelector('.msg-state').textContent = n >= others
      ? gettext('read by everyone')
      : interpolate(gettext('read by %(n)s'), { n }, true);
  }
}

function refreshStates() {
  for (const el of list.querySelectorAll('.msg.mine[data-seq]')) {
    if (el.dataset.state !== 'failed') applyState(el, state.selected, Number(el.dataset.seq));
  }
}

let receiptsTimer = null;
/** Ask for the selected group's "read by N" of our own messages on screen (debounced). */
function fetchGroupReceipts() {
  clearTimeout(receiptsTimer);
  receiptsTimer = setTimeout(() => {
    const c = selectedConversation();
    if (!c || c.kind !== 'group' || !client.connected) return;
    const id = c.id;
    const seqs = [...list.querySelectorAll('.msg.mine[data-seq]')].map((e) => Number(e.dataset.seq)).slice(-200);
    if (!seqs.length) return;
    client.fetchReceipts(id, seqs).then((f) => {
      if (id !== state.selected) return;
      for (const [seq, counts] of Object.entries(f.counts || {})) state.readCounts.set(Number(seq), counts);
      if (f.member_count) c.member_count = f.member_count;
      refreshStates();
    }).catch(() => {});
  }, 300);
}

// ---- typing -------------------------------------------------------------------------------
function renderTyping() {
  $('typing').textContent = typingText(state.typers.names(state.selected));
}

// ---- older history ------------------------------------------------------------------------
const loadOlder = olderLoader({
  indicator: loader,
  getClient: () => client,
  onError(e, conversationId) {
    if (e.code === 'not_found') dropConversation(conversationId);
  },
  // A short first page does not fill the pane: there is nothing to scroll, so keep going.
  onDone: () => requestAnimationFrame(maybeLoadOlder),
});

function maybeLoadOlder() {
  if (state.selected == null || list.scrollTop > 40) return;
  const floor = floorOf(state.messages.get(state.selected));
  if (floor != null && floor > 1) loadOlder(state.selected, floor);
}

list.addEventListener('scroll', maybeLoadOlder, { passive: true });

// ---- store changes ------------------------------------------------------------------------
on('switch', (id) => {
  for (const el of list.querySelectorAll('.msg')) el.remove();
  elBySeq.clear();
  pendingEls.clear();
  for (const m of (state.messages.get(id) || new Map()).values()) showMessage(m);
  for (const item of client.pending()) if (item.conversation_id === id) showPending(item);
});
on('switched', (id) => {
  const c = state.convs.get(id);
  scrollToBottom();
  fetchGroupReceipts();
  if (!state.messages.get(id) && (c.last_seq || 0) > 0) loadOlder(id, null);
  else maybeLoadOlder();
});
on('typing', renderTyping);
on('receipts', refreshStates);
on('closed', scrollToBottom);
on('message', (m) => {
  if (elBySeq.has(m.seq)) showMessage(m);
});
on('members', () => {
  // @mentions shown before the names were known get their highlight now
  for (const m of (state.messages.get(state.selected) || new Map()).values()) if ((m.mentions || []).length) showMessage(m);
});

// ---- frames -------------------------------------------------------------------------------
handle('sync.result', (f) => {
  emit('resync'); // what moved while the socket was down
  const listed = new Set();
  for (const c of f.conversations || []) {
    putConversation(c);
    listed.add(c.id);
  }
  // Conversations no longer ours (transferred, purged) leave the list, unless on screen or
  // brought by a live frame after this sync was sent (the reply predates them).
  const since = f.sent_at ?? Infinity;
  for (const id of [...state.convs.keys()]) {
    if (!listed.has(id) && id !== state.selected && !((state.arrivedAt.get(id) ?? -Infinity) >= since)) {
      state.convs.delete(id);
    }
  }
  const top = new Map();
  const stick = nearBottom();
  for (const m of f.messages) {
    ingest(m);
    if (m.sender && m.sender.key !== state.me) top.set(m.conversation_id, Math.max(top.get(m.conversation_id) || 0, m.seq));
    showIfSelected(m);
  }
  for (const [c, seq] of top) client.updateRead(c, { delivered_seq: seq });
  if (!state.synced) {
    state.synced = true;
    const fromHash = Number((location.hash.match(/^#c(\d+)$/) || [])[1]);
    if (fromHash && state.convs.has(fromHash)) select(fromHash);
  } else if (state.selected != null) {
    if (stick) scrollToBottom();
    emit('header');
    emit('side', false);
    refreshStates();
    markSelectedRead(false);
  }
  emit('list');
});

handle('history.result', (f) => {
  const before = list.scrollHeight - list.scrollTop;
  for (const m of f.messages) {
    ingest(m);
    showIfSelected(m);
  }
  if (f.conversation_id === state.selected) {
    list.scrollTop = list.scrollHeight - before; // keep what the reader was looking at
    markSelectedRead(false);
  }
  emit('list');
});

handle('message.new', (f) => {
  const m = f.message;
  ingest(m);
  const c = state.convs.get(m.conversation_id);
  if (!c) {
    resyncSoon();
    return;
  }
  const kind = kindOf(m);
  const countable = kind === 'theirs' && m.msg_type !== 'recall';
  if (kind !== 'mine') client.updateRead(m.conversation_id, { delivered_seq: m.seq });
  const mentionsMe = countable && (m.mentions || []).some((k) => k === state.me || k === 'all');
  if (m.conversation_id === state.selected) {
    const stick = nearBottom() || kind === 'mine';
    showMessage(m);
    emit('incoming', m);
    if (stick) scrollToBottom();
    if (document.visibilityState === 'visible') markSelectedRead(false);
    else if (countable) c.unread = (c.unread || 0) + 1;
    if (kind === 'mine' && c.kind === 'group') fetchGroupReceipts();
  } else if (countable) {
    c.unread = (c.unread || 0) + 1;
  }
  if (mentionsMe && (m.conversation_id !== state.selected || document.visibilityState !== 'visible')) c.mentioned = true;
  if (countable && (!c.notifications_off || mentionsMe)) notify(c, m, () => select(c.id));
  emit('list');
});

handle('message.ack', (f) => {
  const el = pendingEls.get(f.client_msg_id);
  if (!el) return;
  pendingEls.delete(f.client_msg_id);
  if (f.conversation_id !== state.selected || elBySeq.has(f.seq)) {
    el.remove(); // another conversation is on screen, or message.new got here first
    return;
  }
  el.dataset.seq = f.seq;
  setTime(el, f.created_at);
  elBySeq.set(f.seq, el);
  place(el, [f.seq, 0]);
  applyState(el, f.conversation_id, f.seq);
});

handle('read.state', (f) => {
  const c = state.convs.get(f.conversation_id);
  if (!f.member) return;
  if (f.member.key === state.me) {
    // Read in another tab of ours.
    if (c && f.read_seq > (c.read_seq || 0)) {
      c.read_seq = f.read_seq;
      if (f.read_seq >= (c.last_seq || 0)) c.unread = 0;
      emit('list');
    }
  } else {
    setPeer(f.conversation_id, f.delivered_seq, f.read_seq);
    if (f.conversation_id === state.selected) {
      if (c && c.kind === 'group') fetchGroupReceipts();
      else refreshStates();
    }
  }
});

handle('message.delivery', (f) => {
  const m = (state.messages.get(f.conversation_id) || new Map()).get(f.seq);
  if (!m || m.id !== f.message_id) return;
  m.meta = { ...(m.meta || {}), delivery: f.delivery };
  if (f.conversation_id === state.selected) showMessage(m);
});

handle('typing', (f) => {
  if (!f.member || f.member.key === state.me) return;
  state.typers.frame(f);
});

handle('error', (f) => {
  if (f.failed) {
    const el = pendingEls.get(f.failed.client_msg_id);
    if (el) {
      setState(el, 'failed');
      el.title = f.message || '';
    }
    pendingEls.delete(f.failed.client_msg_id);
  }
  if (f.retrying) return; // the client sends it again by itself
  // Replies to our own requests are handled where they were made.
  if (f.ref && !f.client_msg_id) return;
  if (f.message) toast(f.message);
});

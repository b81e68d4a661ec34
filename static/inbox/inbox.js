// Agent inbox: conversation list, the selected conversation, and the visitor panel.
import { WeiyuClient, bindComposer, hhmm, fullTime } from '../weiyu/client.js';
import {
  buildMsg,
  fillMsg as fill,
  kindOf as kindOfMsg,
  receiptOf,
  setMsgState as setState,
  setMsgTime as setTime,
} from '../weiyu/render.js';

const { gettext, interpolate } = window;

const config = JSON.parse(document.getElementById('weiyu-config').textContent);
const $ = (id) => document.getElementById(id);
const app = $('app');
const convList = $('conv-list');
const list = $('messages');
const loader = $('history-loader');
const composer = $('composer');
const sendBtn = $('send');
const closeBtn = $('close-conv');
const statusSelect = $('agent-status');
const typingLine = $('typing');
const baseTitle = document.title;

const STATUS_TEXT = { queued: gettext('queued'), open: gettext('open'), closed: gettext('closed') };

let me = config.user.key;
let selected = null;
let synced = false;
let loadingOlder = false;
let agentStatus = null;
let maxConcurrent = null;
let tie = 0;
const convs = new Map(); // id -> conversation
const store = new Map(); // id -> Map(seq -> message)
const items = new Map(); // id -> .conv-item element
const elBySeq = new Map(); // "seq" -> element, selected conversation only
const pendingEls = new Map(); // client_msg_id -> element, selected conversation only
const peerMarks = new Map(); // conv -> {d, r}: furthest any other participant got
const typers = new Map(); // conv -> Map(member key -> {name, timer})

// ---- helpers ------------------------------------------------------------------------------
function statusOf(c) {
  if (c.closed) return 'closed';
  return (c.session && c.session.status) || 'open';
}

function lastAt(c) {
  return Date.parse(c.last_message_at || (c.last_message && c.last_message.created_at) ||
    (c.session && c.session.created_at) || 0) || 0;
}

function shortTime(iso) {
  const d = iso ? new Date(iso) : null;
  if (!d || isNaN(d)) return '';
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return hhmm(iso);
  return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

function ingest(m) {
  let msgs = store.get(m.conversation_id);
  if (!msgs) store.set(m.conversation_id, (msgs = new Map()));
  msgs.set(m.seq, m);
  const c = convs.get(m.conversation_id);
  if (c && m.seq >= (c.last_seq || 0)) {
    c.last_seq = m.seq;
    c.last_message = m;
    c.last_message_at = m.created_at;
  }
}

function setPeer(conversationId, delivered, read) {
  const p = peerMarks.get(conversationId) || { d: 0, r: 0 };
  p.d = Math.max(p.d, delivered || 0, read || 0);
  p.r = Math.max(p.r, read || 0);
  peerMarks.set(conversationId, p);
}

function updateConversation(c) {
  const old = convs.get(c.id);
  // A conversation object can be older than messages we already hold (sent before them).
  if (old && (old.last_seq || 0) > (c.last_seq || 0)) {
    c.last_seq = old.last_seq;
    c.last_message = old.last_message;
    c.last_message_at = old.last_message_at;
  }
  if (c.id === selected && document.visibilityState === 'visible') c.unread = 0;
  convs.set(c.id, c);
  for (const peer of c.peers || []) {
    if (peer.member && peer.member.key !== me) setPeer(c.id, peer.delivered_seq, peer.read_seq);
  }
}

function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

// ---- conversation list --------------------------------------------------------------------
function span(cls) {
  const s = document.createElement('span');
  s.className = cls;
  return s;
}

function renderItem(c) {
  let el = items.get(c.id);
  if (!el) {
    el = document.createElement('button');
    el.type = 'button';
    el.className = 'conv-item';
    el.dataset.id = c.id;
    const top = span('conv-top');
    const time = document.createElement('time');
    time.className = 'conv-time';
    top.append(span('conv-title'), time);
    const bottom = span('conv-bottom');
    bottom.append(span('conv-preview'), span('conv-unread'));
    el.append(top, bottom, span('conv-status'));
    el.addEventListener('click', () => select(c.id));
    items.set(c.id, el);
  }
  const status = statusOf(c);
  el.dataset.status = status;
  el.classList.toggle('closed', status === 'closed');
  el.classList.toggle('selected', c.id === selected);
  if (c.id === selected) el.setAttribute('aria-current', 'true');
  else el.removeAttribute('aria-current');
  el.querySelector('.conv-title').textContent = c.title || (c.session && c.session.visitor && c.session.visitor.name) || '#' + c.id;
  const at = c.last_message_at || (c.last_message && c.last_message.created_at);
  const time = el.querySelector('.conv-time');
  time.textContent = shortTime(at);
  time.title = fullTime(at);
  const lm = c.last_message;
  el.querySelector('.conv-preview').textContent = !lm
    ? ''
    : kindOf(lm) === 'mine'
      ? interpolate(gettext('You: %(text)s'), { text: lm.content }, true)
      : lm.content;
  const unread = el.querySelector('.conv-unread');
  const n = c.unread || 0; // zeroed on selection; counts on while the tab is hidden
  unread.textContent = n > 99 ? '99+' : String(n);
  unread.hidden = n === 0;
  unread.setAttribute('aria-label', interpolate(gettext('%(count)s unread'), { count: n }, true));
  const st = el.querySelector('.conv-status');
  st.textContent = STATUS_TEXT[status] || status;
  st.dataset.status = status;
  return el;
}

function renderList() {
  const sorted = [...convs.values()].sort((a, b) => {
    const ca = a.closed ? 1 : 0;
    const cb = b.closed ? 1 : 0;
    return ca - cb || lastAt(b) - lastAt(a) || b.id - a.id;
  });
  // Re-appending existing nodes only moves them, so focus and hover survive.
  sorted.forEach((c, i) => {
    const el = renderItem(c);
    if (convList.children[i] !== el) convList.insertBefore(el, convList.children[i] || null);
  });
  for (const [id, el] of items) {
    if (!convs.has(id)) {
      el.remove();
      items.delete(id);
    }
  }
  $('conv-list-empty').hidden = convs.size > 0 || !synced;
  renderLoad();
  const total = [...convs.values()].reduce((n, c) => n + (c.unread || 0), 0);
  document.title = total ? `(${total}) ${baseTitle}` : baseTitle;
}

// ---- messages -----------------------------------------------------------------------------
function kindOf(m) {
  return kindOfMsg(m, me);
}

function receiptState(conversationId, seq) {
  return receiptOf(peerMarks.get(conversationId), seq);
}

function refreshStates() {
  for (const el of list.querySelectorAll('.msg.mine[data-seq]')) {
    if (el.dataset.state !== 'failed') setState(el, receiptState(selected, Number(el.dataset.seq)));
  }
}

// Sorted by seq, pending last; scanning from the end because nearly every insert is an append.
function place(el, key) {
  el._key = key;
  const msgs = list.querySelectorAll(':scope > .msg');
  for (let i = msgs.length - 1; i >= 0; i--) {
    if (msgs[i] === el) continue;
    const k = msgs[i]._key;
    if (k[0] < key[0] || (k[0] === key[0] && k[1] <= key[1])) {
      msgs[i].after(el);
      return;
    }
  }
  loader.after(el);
}

function nearBottom() {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

function scrollToBottom() {
  list.scrollTop = list.scrollHeight;
}

function showMessage(m) {
  const kind = kindOf(m);
  let el = elBySeq.get(m.seq);
  if (!el && kind === 'mine' && m.client_msg_id && pendingEls.has(m.client_msg_id)) {
    el = pendingEls.get(m.client_msg_id);
    pendingEls.delete(m.client_msg_id);
  }
  if (!el) el = buildMsg(kind);
  el.dataset.conversation = m.conversation_id;
  el.dataset.seq = m.seq;
  fill(el, { content: m.content, created_at: m.created_at, name: m.sender && m.sender.name });
  if (kind === 'mine') setState(el, receiptState(m.conversation_id, m.seq));
  elBySeq.set(m.seq, el);
  place(el, [m.seq, 0]);
  if (kind !== 'mine' && m.sender) clearTyper(m.conversation_id, m.sender.key);
}

function showPending(item) {
  const el = buildMsg('mine');
  el.dataset.conversation = item.conversation_id;
  fill(el, { content: item.content, created_at: item.created_at, name: config.user.name });
  setState(el, 'pending');
  pendingEls.set(item.client_msg_id, el);
  place(el, [Infinity, ++tie]);
  return el;
}

// ---- selection ----------------------------------------------------------------------------
function select(id) {
  const c = convs.get(id);
  if (!c) return;
  const switching = selected !== id;
  selected = id;
  if (switching) {
    for (const el of list.querySelectorAll('.msg')) el.remove();
    elBySeq.clear();
    pendingEls.clear();
    for (const m of (store.get(id) || new Map()).values()) showMessage(m);
    for (const item of client.pending()) if (item.conversation_id === id) showPending(item);
    composer.value = '';
    history.replaceState(null, '', '#c' + id);
  }
  $('no-selection').hidden = true;
  $('conversation').hidden = false;
  app.classList.add('show-conv');
  renderHeader();
  renderVisitor();
  renderTyping();
  c.unread = 0;
  markSelectedRead(true);
  renderList();
  if (switching) {
    scrollToBottom();
    if (!store.get(id) && (c.last_seq || 0) > 0) loadOlder(id, null);
    else maybeLoadOlder();
    if (window.matchMedia('(pointer: fine)').matches && !c.closed) composer.focus();
  }
}

function renderHeader() {
  const c = convs.get(selected);
  if (!c) return;
  $('conv-heading').textContent = c.title || '';
  const st = $('conv-heading-status');
  st.textContent = STATUS_TEXT[statusOf(c)] || statusOf(c);
  st.dataset.status = statusOf(c);
  closeBtn.disabled = !!c.closed;
  composer.disabled = sendBtn.disabled = !!c.closed;
  composer.placeholder = c.closed
    ? gettext('This conversation is closed.')
    : gettext('Type a reply… (Enter to send, Shift+Enter for a new line)');
}

function renderVisitor() {
  const c = convs.get(selected);
  const s = (c && c.session) || {};
  const v = s.visitor || {};
  $('visitor-none').hidden = !!c;
  $('visitor-details').hidden = !c;
  if (!c) return;
  $('v-name').textContent = v.name || c.title || '';
  const page = $('v-page');
  page.replaceChildren();
  if (v.page_url) {
    let url = null;
    try {
      url = new URL(v.page_url);
    } catch (e) { /* shown as text */ }
    // Only real web links become clickable; anything else (javascript:, data:) stays text.
    if (url && (url.protocol === 'http:' || url.protocol === 'https:')) {
      const a = document.createElement('a');
      a.href = url.href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.textContent = v.page_url;
      page.append(a);
    } else {
      page.textContent = v.page_url;
    }
  } else {
    page.textContent = '—';
  }
  $('v-language').textContent = v.language || '—';
  $('v-workgroup').textContent = (s.workgroup && s.workgroup.name) || '—';
  $('v-status').textContent = STATUS_TEXT[statusOf(c)] || statusOf(c);
  $('v-agent').textContent = (s.agent && s.agent.name) || '—';
  $('v-started').textContent = s.created_at ? fullTime(s.created_at) : '—';
  $('v-closed').textContent = s.closed_at ? fullTime(s.closed_at) : '—';
}

function markSelectedRead(force) {
  const c = convs.get(selected);
  if (!c || document.visibilityState !== 'visible') return;
  const msgs = store.get(selected);
  const top = Math.max(c.last_seq || 0, msgs && msgs.size ? Math.max(...msgs.keys()) : 0);
  if (top > 0 && (force || top > (c.read_seq || 0))) {
    client.updateRead(selected, { read_seq: top });
    c.read_seq = Math.max(c.read_seq || 0, top);
  }
  if (c.unread) {
    c.unread = 0;
    renderList();
  }
}

document.addEventListener('visibilitychange', () => markSelectedRead(false));

$('back').addEventListener('click', () => app.classList.remove('show-conv'));

// ---- typing -------------------------------------------------------------------------------
function renderTyping() {
  const t = typers.get(selected);
  const names = t ? [...t.values()].map((x) => x.name) : [];
  typingLine.textContent = names.length
    ? interpolate(gettext('%(name)s is typing…'), { name: names.join(', ') }, true)
    : '';
}

function clearTyper(conversationId, key) {
  const t = typers.get(conversationId);
  const x = t && t.get(key);
  if (!x) return;
  clearTimeout(x.timer);
  t.delete(key);
  if (conversationId === selected) renderTyping();
}

// ---- older history ------------------------------------------------------------------------
function floorOf(conversationId) {
  const msgs = store.get(conversationId);
  if (!msgs || !msgs.size) return null;
  let s = Math.max(...msgs.keys());
  while (msgs.has(s - 1)) s--;
  return s;
}

function loadOlder(conversationId, beforeSeq) {
  if (loadingOlder || !client.connected) return;
  loadingOlder = true;
  loader.hidden = false;
  client
    .fetchHistory(conversationId, beforeSeq, 50)
    .catch((e) => {
      if (e.code === 'not_found') dropConversation(conversationId);
    })
    .finally(() => {
      loadingOlder = false;
      loader.hidden = true;
      // A short first page does not fill the pane: there is nothing to scroll, so keep going.
      requestAnimationFrame(maybeLoadOlder);
    });
}

function maybeLoadOlder() {
  if (selected == null || list.scrollTop > 40) return;
  const floor = floorOf(selected);
  if (floor != null && floor > 1) loadOlder(selected, floor);
}

list.addEventListener('scroll', maybeLoadOlder, { passive: true });

function dropConversation(id) {
  convs.delete(id);
  if (selected === id) {
    selected = null;
    $('conversation').hidden = true;
    $('no-selection').hidden = false;
    app.classList.remove('show-conv');
    renderVisitor();
  }
  renderList();
}

// ---- frames -------------------------------------------------------------------------------
let resyncTimer = null;
function resyncSoon() {
  // A message for a conversation we have not heard of: its conversation.assigned was missed.
  if (!resyncTimer) resyncTimer = setTimeout(() => { resyncTimer = null; client.sync(); }, 500);
}

function setAgentStatus(f) {
  if (!f || !f.status) return;
  agentStatus = f.status;
  statusSelect.value = f.status;
  $('status-wrap').dataset.status = f.status;
  if (f.max_concurrent != null) maxConcurrent = f.max_concurrent;
  renderLoad();
}

// Counted from the list rather than taken from agent.status, which only comes on status changes.
function renderLoad() {
  if (maxConcurrent == null) return;
  let open = 0;
  for (const c of convs.values()) if (statusOf(c) === 'open') open++;
  $('agent-load').textContent = `${open}/${maxConcurrent}`;
}

function onFrame(f) {
  switch (f.type) {
    case 'hello':
      if (f.member) me = f.member.key;
      setAgentStatus(f.agent);
      break;

    case 'agent.status':
      setAgentStatus(f);
      break;

    case 'sync.result': {
      const listed = new Set();
      for (const c of f.conversations || []) {
        updateConversation(c);
        listed.add(c.id);
      }
      // Conversations no longer ours (transferred, purged) leave the list, unless on screen.
      for (const id of [...convs.keys()]) if (!listed.has(id) && id !== selected) convs.delete(id);
      const top = new Map();
      const stick = nearBottom();
      for (const m of f.messages) {
        ingest(m);
        if (m.sender && m.sender.key !== me) top.set(m.conversation_id, Math.max(top.get(m.conversation_id) || 0, m.seq));
        if (m.conversation_id === selected) showMessage(m);
      }
      for (const [c, seq] of top) client.updateRead(c, { delivered_seq: seq });
      if (!synced) {
        synced = true;
        const fromHash = Number((location.hash.match(/^#c(\d+)$/) || [])[1]);
        if (fromHash && convs.has(fromHash)) select(fromHash);
      } else if (selected != null) {
        if (stick) scrollToBottom();
        renderHeader();
        renderVisitor();
        refreshStates();
        markSelectedRead(false);
      }
      renderList();
      break;
    }

    case 'history.result': {
      const before = list.scrollHeight - list.scrollTop;
      for (const m of f.messages) {
        ingest(m);
        if (m.conversation_id === selected) showMessage(m);
      }
      if (f.conversation_id === selected) {
        list.scrollTop = list.scrollHeight - before; // keep what the reader was looking at
        markSelectedRead(false);
      }
      renderList();
      break;
    }

    case 'message.new': {
      const m = f.message;
      ingest(m);
      const c = convs.get(m.conversation_id);
      if (!c) {
        resyncSoon();
        break;
      }
      const kind = kindOf(m);
      if (kind !== 'mine') client.updateRead(m.conversation_id, { delivered_seq: m.seq });
      if (m.conversation_id === selected) {
        const stick = nearBottom() || kind === 'mine';
        showMessage(m);
        if (stick) scrollToBottom();
        if (document.visibilityState === 'visible') markSelectedRead(false);
        else if (kind !== 'mine') c.unread = (c.unread || 0) + 1;
      } else if (kind !== 'mine') {
        c.unread = (c.unread || 0) + 1;
      }
      renderList();
      break;
    }

    case 'message.ack': {
      const el = pendingEls.get(f.client_msg_id);
      if (!el) break;
      pendingEls.delete(f.client_msg_id);
      if (f.conversation_id !== selected) {
        el.remove();
        break;
      }
      if (elBySeq.has(f.seq)) {
        el.remove(); // message.new got here first
        break;
      }
      el.dataset.seq = f.seq;
      setTime(el, f.created_at);
      elBySeq.set(f.seq, el);
      place(el, [f.seq, 0]);
      setState(el, receiptState(f.conversation_id, f.seq));
      break;
    }

    case 'read.state': {
      const c = convs.get(f.conversation_id);
      if (!f.member) break;
      if (f.member.key === me) {
        // Read in another tab of ours.
        if (c && f.read_seq > (c.read_seq || 0)) {
          c.read_seq = f.read_seq;
          if (f.read_seq >= (c.last_seq || 0)) c.unread = 0;
          renderList();
        }
      } else {
        setPeer(f.conversation_id, f.delivered_seq, f.read_seq);
        if (f.conversation_id === selected) refreshStates();
      }
      break;
    }

    case 'typing': {
      if (!f.member || f.member.key === me) break;
      const conversationId = f.conversation_id;
      const key = f.member.key;
      clearTyper(conversationId, key);
      if (f.state === 'start') {
        if (!typers.has(conversationId)) typers.set(conversationId, new Map());
        // A lost typing.stop must not leave the line up forever.
        typers.get(conversationId).set(key, {
          name: f.member.name,
          timer: setTimeout(() => clearTyper(conversationId, key), 6000),
        });
        if (conversationId === selected) renderTyping();
      }
      break;
    }

    case 'conversation.assigned': {
      const c = f.conversation;
      const isNew = !convs.has(c.id);
      updateConversation(c);
      renderList();
      if (isNew) {
        const el = items.get(c.id);
        el.classList.add('fresh'); // a visual cue only: new assignments make no sound
        setTimeout(() => el.classList.remove('fresh'), 2500);
      }
      if (c.id === selected) {
        renderHeader();
        renderVisitor();
        refreshStates();
      }
      break;
    }

    case 'conversation.closed': {
      const c = convs.get(f.conversation_id);
      if (!c) break;
      c.closed = true;
      if (c.session) {
        c.session.status = 'closed';
        c.session.closed_at = f.closed_at;
      }
      typers.delete(f.conversation_id);
      if (f.conversation_id === selected) {
        renderHeader();
        renderVisitor();
        renderTyping();
        scrollToBottom();
      }
      renderList();
      break;
    }

    case 'error':
      onError(f);
      break;
    default:
  }
}

function onError(f) {
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
}

// ---- composer and actions -----------------------------------------------------------------
function sendNow() {
  const c = convs.get(selected);
  const content = composer.value.trim();
  if (!c || c.closed || !content) return;
  const item = client.send(selected, content);
  showPending(item);
  composer.value = '';
  scrollToBottom();
}

bindComposer({
  form: $('composer-form'),
  textarea: composer,
  send: sendNow,
  onInput: () => {
    if (selected != null && composer.value.trim()) client.typing(selected);
  },
});

closeBtn.addEventListener('click', () => {
  const id = selected;
  if (id == null) return;
  closeBtn.disabled = true;
  client.closeConversation(id).catch((e) => {
    if (e.code === 'not_found') dropConversation(id);
    else toast(e.message && e.code !== 'disconnected' ? e.message : gettext('Could not close the conversation. Try again.'));
    const c = convs.get(id);
    if (id === selected && c && !c.closed) closeBtn.disabled = false;
  });
});

statusSelect.addEventListener('change', () => {
  const wanted = statusSelect.value;
  client.setAgentStatus(wanted).catch((e) => {
    toast(e.message && e.code !== 'disconnected' ? e.message : gettext('Could not change your status. Try again.'));
    if (agentStatus) statusSelect.value = agentStatus;
  });
});

// ---- connection ---------------------------------------------------------------------------
function onState(state) {
  const s = $('conn-status');
  s.dataset.state = state;
  statusSelect.disabled = state !== 'open';
  if (state === 'open') {
    s.textContent = '';
    s.hidden = true;
    return;
  }
  s.hidden = false;
  s.replaceChildren();
  if (state === 'connecting') s.textContent = gettext('Connecting…');
  else if (state === 'reconnecting' || state === 'offline') s.textContent = gettext('Reconnecting…');
  else if (state === 'unauthorized') {
    s.append(gettext('You have been signed out.') + ' ');
    const a = document.createElement('a');
    a.href = location.pathname; // the inbox page sends us to the login form
    a.textContent = gettext('Sign in again');
    s.append(a);
  }
}

const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
const client = new WeiyuClient({ url: scheme + location.host + config.ws_path, onFrame, onState });

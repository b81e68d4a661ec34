// Agent inbox: customer and team conversation lists, the selected conversation, and the side
// panel (visitor details, the colleague of a 1:1 chat, or the group's settings and members).
import { WeiyuClient, bindComposer, hhmm, fullTime } from '../weiyu/client.js';
import {
  EMOJI,
  api,
  fillBody,
  formatSize,
  kindForFile,
  pickPeople,
  previewText,
  startRecording,
  upload,
} from './team.js';
import { setupCanned } from './canned.js';
import { setupTickets } from './tickets.js';
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

const STATUS_TEXT = {
  robot: gettext('with the robot'),
  queued: gettext('queued'),
  open: gettext('open'),
  closed: gettext('closed'),
};

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
const names = new Map([[me, config.user.name]]); // member key -> name, for @mentions
const readCounts = new Map(); // seq -> {read, delivered}: the selected group's "read by N"
const mentionPicks = new Map(); // "@name" -> member key, chosen in the composer
let tab = 'customers';
let showArchived = false;
let groupMembers = null; // the selected group's members, [{member, role, muted_until}]

// ---- helpers ------------------------------------------------------------------------------
function statusOf(c) {
  if (c.closed) return 'closed';
  return (c.session && c.session.status) || 'open';
}

const tabOf = (c) => (c.kind === 'direct' || c.kind === 'group' ? 'team' : 'customers');
const isStaff = (role) => role === 'owner' || role === 'admin';

function titleOf(c) {
  if (c.kind === 'direct') {
    const p = (c.peers || []).find((x) => x.member && x.member.key !== me);
    return (p && p.member.name) || c.title || gettext('Chat');
  }
  return c.title || (c.session && c.session.visitor && c.session.visitor.name) || '#' + c.id;
}

// Archived conversations stay out of the list until a message newer than the archiving comes.
function archivedAway(c) {
  return !!c.archived && !(c.archived_at && lastAt(c) > Date.parse(c.archived_at));
}

function mutedNow(c) {
  if (c.closed) return true;
  if (c.muted_until && Date.parse(c.muted_until) > Date.now()) return true;
  return !!(c.kind === 'group' && c.group && c.group.all_muted && !isStaff(c.role));
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
  if (m.sender && m.sender.key) names.set(m.sender.key, m.sender.name);
  if (m.msg_type === 'recall' && m.ref_seq) {
    const original = msgs.get(m.ref_seq);
    if (original) Object.assign(original, { recalled: true, content: '', attachment: null, mentions: [] });
    if (m.conversation_id === selected && elBySeq.has(m.ref_seq) && original) showMessage(original);
  }
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
  if (c.id === selected) c.mentioned = false;
  convs.set(c.id, c);
  for (const peer of c.peers || []) {
    if (peer.member) names.set(peer.member.key, peer.member.name);
    if (peer.member && peer.member.key !== me) setPeer(c.id, peer.delivered_seq, peer.read_seq);
  }
}

/** Fetch one conversation again (after conversation.updated or a search hit elsewhere). */
const refreshing = new Map();
function refreshConversation(id) {
  if (refreshing.has(id)) return refreshing.get(id);
  const p = api('GET', `/api/v1/im/conversations/${id}`)
    .then((c) => {
      updateConversation(c);
      renderList();
      if (id === selected) {
        renderHeader();
        renderSide(true);
      }
      return c;
    })
    .catch((e) => {
      if (e.status === 404) dropConversation(id);
      return null;
    })
    .finally(() => refreshing.delete(id));
  refreshing.set(id, p);
  return p;
}

function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

window.weiyuUserId = config.user.id;
// While a ticket is on screen the conversation pane steps aside, and comes back after.
const ticketsUi = setupTickets({
  toast,
  onActive(on) {
    if (on) {
      $('conversation').hidden = true;
      $('no-selection').hidden = true;
      app.classList.add('show-conv');
    } else {
      showConversationPane();
    }
  },
});

function showConversationPane() {
  $('ticket-view').hidden = true;
  const c = convs.get(selected);
  $('conversation').hidden = !c;
  $('no-selection').hidden = !!c;
  if (!c) app.classList.remove('show-conv');
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
    top.append(span('conv-title'), span('conv-marks'), time);
    const bottom = span('conv-bottom');
    bottom.append(span('conv-mention'), span('conv-preview'), span('conv-unread'));
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
  el.dataset.kind = c.kind;
  el.querySelector('.conv-title').textContent = titleOf(c);
  el.querySelector('.conv-marks').textContent =
    (c.pinned ? '📌' : '') + (c.notifications_off ? '🔕' : '') + (c.archived ? '🗄' : '');
  const mention = el.querySelector('.conv-mention');
  mention.textContent = c.mentioned && c.unread ? gettext('[@you]') : '';
  mention.hidden = !mention.textContent;
  const at = c.last_message_at || (c.last_message && c.last_message.created_at);
  const time = el.querySelector('.conv-time');
  time.textContent = shortTime(at);
  time.title = fullTime(at);
  const lm = c.last_message;
  el.querySelector('.conv-preview').textContent = lm ? previewText({ ...lm, conversation_kind: c.kind }, me) : '';
  const unread = el.querySelector('.conv-unread');
  const n = c.unread || 0; // zeroed on selection; counts on while the tab is hidden
  unread.textContent = n > 99 ? '99+' : String(n);
  unread.hidden = n === 0;
  unread.classList.toggle('quiet', !!c.notifications_off);
  unread.setAttribute('aria-label', interpolate(gettext('%(count)s unread'), { count: n }, true));
  const st = el.querySelector('.conv-status');
  st.textContent = c.kind === 'visitor' ? STATUS_TEXT[status] || status : c.closed ? gettext('dissolved') : '';
  st.dataset.status = status;
  st.hidden = !st.textContent;
  return el;
}

function renderList() {
  const shown = [...convs.values()]
    .filter((c) => tabOf(c) === tab && (showArchived || !archivedAway(c) || c.id === selected))
    .sort((a, b) => {
      const pa = a.pinned ? 0 : 1;
      const pb = b.pinned ? 0 : 1;
      const ca = a.closed ? 1 : 0;
      const cb = b.closed ? 1 : 0;
      return pa - pb || ca - cb || lastAt(b) - lastAt(a) || b.id - a.id;
    });
  // Re-appending existing nodes only moves them, so focus and hover survive.
  shown.forEach((c, i) => {
    const el = renderItem(c);
    if (convList.children[i] !== el) convList.insertBefore(el, convList.children[i] || null);
  });
  const keep = new Set(shown.map((c) => c.id));
  for (const [id, el] of items) {
    if (!convs.has(id)) items.delete(id);
    if (!keep.has(id)) el.remove();
  }
  $('conv-list-empty').hidden = shown.length > 0 || !synced;
  renderLoad();
  // Unread per tab; do-not-disturb conversations count only when they @mention us.
  const unread = { customers: 0, team: 0 };
  for (const c of convs.values()) {
    if (!c.notifications_off || c.mentioned) unread[tabOf(c)] += c.unread || 0;
  }
  for (const name of ['customers', 'team']) {
    const badge = $('tab-' + name).querySelector('.tab-unread');
    badge.textContent = unread[name] > 99 ? '99+' : String(unread[name]);
    badge.hidden = !unread[name];
  }
  const total = unread.customers + unread.team;
  document.title = total ? `(${total}) ${baseTitle}` : baseTitle;
}

function setTab(name) {
  if (tab === name) return;
  const leavingTickets = tab === 'tickets';
  tab = name;
  app.dataset.tab = name;
  for (const t of document.querySelectorAll('.tab')) t.setAttribute('aria-selected', String(t.dataset.tab === name));
  ticketsUi.setActive(name === 'tickets');
  if (name === 'tickets') {
    $('conversation').hidden = true;
    $('no-selection').hidden = !$('ticket-view').hidden;
  } else if (leavingTickets) {
    showConversationPane();
  }
  renderList();
}

for (const t of document.querySelectorAll('.tab')) t.addEventListener('click', () => setTab(t.dataset.tab));
$('show-archived').addEventListener('change', (e) => {
  showArchived = e.target.checked;
  renderList();
});

// ---- messages -----------------------------------------------------------------------------
function kindOf(m) {
  return kindOfMsg(m, me);
}

function receiptState(conversationId, seq) {
  return receiptOf(peerMarks.get(conversationId), seq);
}

// In groups "read by N" replaces delivered/read: counts come from receipts.fetch.
function applyState(el, conversationId, seq) {
  const c = convs.get(conversationId);
  if (!c || c.kind !== 'group') {
    setState(el, receiptState(conversationId, seq));
    return;
  }
  const n = (readCounts.get(seq) || {}).read || 0;
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
    if (el.dataset.state !== 'failed') applyState(el, selected, Number(el.dataset.seq));
  }
}

let receiptsTimer = null;
/** Ask for the selected group's "read by N" of our own messages on screen (debounced). */
function fetchGroupReceipts() {
  clearTimeout(receiptsTimer);
  receiptsTimer = setTimeout(() => {
    const c = convs.get(selected);
    if (!c || c.kind !== 'group' || !client.connected) return;
    const id = c.id;
    const seqs = [...list.querySelectorAll('.msg.mine[data-seq]')].map((e) => Number(e.dataset.seq)).slice(-200);
    if (!seqs.length) return;
    client.fetchReceipts(id, seqs).then((f) => {
      if (id !== selected) return;
      for (const [seq, counts] of Object.entries(f.counts || {})) readCounts.set(Number(seq), counts);
      if (f.member_count) c.member_count = f.member_count;
      refreshStates();
    }).catch(() => {});
  }, 300);
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
  elBySeq.set(m.seq, el);
  place(el, [m.seq, 0]);
  if (kind !== 'mine' && m.sender) clearTyper(m.conversation_id, m.sender.key);
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
  } else if (meta.reply_to && !meta.answered) {
    parts.push(gettext('Not answered'));
  }
  if (meta.feedback === 'helpful') parts.push(gettext('Rated helpful'));
  if (meta.feedback === 'not_helpful') parts.push(gettext('Rated not helpful'));
  note.textContent = parts.join(' · ');
  note.hidden = !parts.length;
}

const bodyContext = {
  get me() {
    return me;
  },
  nameOf: (key) => names.get(key) || '',
};

// Own messages get a "Recall" action while the tenant's recall window is open.
function addRecall(el, m) {
  const old = el.querySelector('.msg-recall');
  if (old) old.remove();
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

function showPending(item) {
  const el = buildMsg('mine');
  el.dataset.conversation = item.conversation_id;
  fill(el, { content: item.label || item.content, created_at: item.created_at, name: config.user.name });
  el.classList.toggle('internal', !!(item.extra && item.extra.internal));
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
  if (tabOf(c) !== tab) setTab(tabOf(c));
  c.mentioned = false;
  if (switching) {
    for (const el of list.querySelectorAll('.msg')) el.remove();
    elBySeq.clear();
    pendingEls.clear();
    readCounts.clear();
    mentionPicks.clear();
    groupMembers = null;
    closePickers();
    $('internal-toggle').checked = false;
    for (const m of (store.get(id) || new Map()).values()) showMessage(m);
    for (const item of client.pending()) if (item.conversation_id === id) showPending(item);
    composer.value = '';
    history.replaceState(null, '', '#c' + id);
  }
  $('no-selection').hidden = true;
  $('conversation').hidden = false;
  app.classList.add('show-conv');
  renderHeader();
  renderSide(switching);
  renderTyping();
  c.unread = 0;
  markSelectedRead(true);
  renderList();
  if (switching) {
    scrollToBottom();
    fetchGroupReceipts();
    if (!store.get(id) && (c.last_seq || 0) > 0) loadOlder(id, null);
    else maybeLoadOlder();
    if (window.matchMedia('(pointer: fine)').matches && !c.closed) composer.focus();
  }
}

function renderHeader() {
  const c = convs.get(selected);
  if (!c) return;
  $('conv-heading').textContent = titleOf(c);
  const st = $('conv-heading-status');
  if (c.kind === 'visitor') st.textContent = STATUS_TEXT[statusOf(c)] || statusOf(c);
  else if (c.kind === 'group') {
    st.textContent = c.closed
      ? gettext('dissolved')
      : interpolate(gettext('%(n)s members'), { n: c.member_count || 0 }, true);
  } else st.textContent = '';
  st.dataset.status = c.kind === 'visitor' ? statusOf(c) : c.kind;
  st.hidden = !st.textContent;
  closeBtn.hidden = c.kind !== 'visitor';
  $('make-ticket').hidden = c.kind !== 'visitor';
  closeBtn.disabled = !!c.closed;
  for (const [btn, on] of [['pin-btn', c.pinned], ['dnd-btn', c.notifications_off], ['archive-btn', c.archived]]) {
    $(btn).setAttribute('aria-pressed', String(!!on));
  }
  const ann = $('announcement');
  const text = c.group && c.group.announcement;
  ann.hidden = !text;
  ann.textContent = text ? interpolate(gettext('Announcement: %(text)s'), { text }, true) : '';
  $('internal-wrap').hidden = c.kind !== 'visitor' || !!c.closed;
  const muted = mutedNow(c);
  composer.disabled = sendBtn.disabled = muted;
  for (const b of ['emoji-btn', 'sticker-btn', 'attach-btn', 'voice-btn']) $(b).disabled = muted;
  composer.placeholder = c.closed
    ? c.kind === 'group' ? gettext('This group was dissolved.') : gettext('This conversation is closed.')
    : muted
      ? gettext('You cannot send messages here now (muted).')
      : c.kind === 'visitor'
        ? gettext('Type a reply… (Enter to send, Shift+Enter for a new line, / for canned responses)')
        : gettext('Type a reply… (Enter to send, Shift+Enter for a new line)');
}

/** The right-hand pane for the selected conversation; `reload` fetches group members again. */
function renderSide(reload) {
  const c = convs.get(selected);
  const kind = c ? c.kind : null;
  $('visitor-heading').hidden = kind !== null && kind !== 'visitor';
  $('peer-panel').hidden = kind !== 'direct';
  $('group-panel').hidden = kind !== 'group';
  if (kind !== 'visitor') $('kb-suggest').hidden = $('block-form').hidden = true;
  if (kind === 'direct') {
    $('visitor-none').hidden = true;
    $('visitor-details').hidden = true;
    $('peer-names').textContent = titleOf(c);
  } else if (kind === 'group') {
    $('visitor-none').hidden = true;
    $('visitor-details').hidden = true;
    renderGroup(c, reload);
  } else {
    renderVisitor();
  }
}

// ---- suggested replies from the knowledge base ------------------------------------------
let suggestFor = null; // "conversation:seq" the suggestions were made for
async function suggestReplies() {
  const c = convs.get(selected);
  const box = $('kb-suggest');
  if (!c || c.kind !== 'visitor' || c.closed) {
    box.hidden = true;
    return;
  }
  const msgs = [...(store.get(c.id) || new Map()).values()].filter(
    (m) => kindOf(m) === 'theirs' && m.sender && m.sender.type === 'visitor' && m.content && !m.recalled,
  );
  const last = msgs.sort((a, b) => a.seq - b.seq).pop();
  if (!last) {
    box.hidden = true;
    return;
  }
  const key = `${c.id}:${last.seq}`;
  if (key === suggestFor) return;
  suggestFor = key;
  let data;
  try {
    data = await api('GET', '/api/v1/kbase/search?' + new URLSearchParams({ q: last.content.slice(0, 200), limit: '3' }));
  } catch (e) {
    box.hidden = true;
    return;
  }
  if (suggestFor !== key) return;
  const list = $('kb-suggest-list');
  list.replaceChildren();
  for (const r of data.results) {
    const item = document.createElement('div');
    item.className = 'kb-item';
    const title = document.createElement('div');
    title.className = 'kb-title';
    title.textContent = r.title;
    const snippet = document.createElement('div');
    snippet.className = 'kb-snippet';
    snippet.textContent = r.snippet;
    const use = document.createElement('button');
    use.type = 'button';
    use.className = 'btn btn-small';
    use.textContent = gettext('Use this answer');
    use.addEventListener('click', () => {
      composer.value = composer.value ? composer.value + '\n' + r.text : r.text;
      composer.focus();
    });
    item.append(title, snippet, use);
    list.append(item);
  }
  $('ai-draft').hidden = !config.ai_drafts;
  box.hidden = data.results.length === 0 && !config.ai_drafts;
}

// ---- AI draft reply (a worker streams it as assist.draft frames) --------------------------
let draftRequest = null;
$('ai-draft-btn').addEventListener('click', async () => {
  const c = convs.get(selected);
  if (!c) return;
  const out = $('ai-draft-text');
  out.textContent = gettext('Writing a draft…');
  out.hidden = false;
  $('ai-draft-use').hidden = true;
  try {
    const data = await api('POST', '/api/v1/kefu/drafts', { conversation_id: c.id });
    draftRequest = data.request_id;
  } catch (err) {
    out.textContent = err.message;
  }
});

function onDraft(f) {
  if (f.request_id !== draftRequest) return;
  const out = $('ai-draft-text');
  out.hidden = false;
  out.textContent = f.error || f.text || gettext('Writing a draft…');
  $('ai-draft-use').hidden = !(f.done && !f.error && f.text);
}

$('ai-draft-use').addEventListener('click', () => {
  const text = $('ai-draft-text').textContent;
  composer.value = composer.value ? composer.value + '\n' + text : text;
  composer.focus();
});

$('block-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const c = convs.get(selected);
  if (!c || c.kind !== 'visitor') return;
  if (!confirm(gettext('Block this visitor and close the conversation?'))) return;
  const minutes = $('block-minutes').value;
  try {
    await api('POST', '/api/v1/kefu/blocks', {
      conversation_id: c.id,
      minutes: minutes ? Number(minutes) : null,
      by_ip: $('block-ip').checked,
      reason: $('block-reason').value.trim(),
    });
    $('block-reason').value = '';
    toast(gettext('The visitor is blocked.'));
  } catch (err) {
    toast(err.message);
  }
});

function renderVisitor() {
  const c = convs.get(selected);
  const s = (c && c.session) || {};
  const v = s.visitor || {};
  $('visitor-none').hidden = !!c;
  $('visitor-details').hidden = !c;
  $('block-form').hidden = true;
  if (!c) {
    loadProfile(null);
    return;
  }
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
  const csat = s.csat && s.csat.score ? s.csat : null;
  $('v-csat').textContent = csat ? '★'.repeat(csat.score) + '☆'.repeat(5 - csat.score) + (csat.comment ? ` “${csat.comment}”` : '') : '—';
  $('block-form').hidden = !!c.closed;
  loadProfile(v.id);
  const mine = s.status === 'open' && s.agent && s.agent.id === config.user.id;
  $('transfer-form').hidden = !mine || !!c.closed;
  if (mine) loadTeam();
  suggestReplies();
}

// ---- visitor profile: device, tags, notes, trail, past conversations --------------------
let profileFor = null;
async function loadProfile(visitorId, force = false) {
  const box = $('visitor-profile');
  if (!visitorId) {
    box.hidden = true;
    profileFor = null;
    return;
  }
  if (visitorId === profileFor && !force) return;
  profileFor = visitorId;
  let p;
  try {
    p = await api('GET', `/api/v1/kefu/visitors/${visitorId}`);
  } catch (e) {
    box.hidden = true;
    return;
  }
  if (profileFor !== visitorId) return;
  box.hidden = false;
  $('v-browser').textContent = [p.browser, p.os, p.device].filter(Boolean).join(' · ') || '—';
  $('v-ip').textContent = [p.ip_address, p.location && p.location.text].filter(Boolean).join(' · ') || '—';
  $('v-referrer').textContent = p.referrer || '—';
  const tags = $('v-tags');
  tags.replaceChildren();
  for (const name of p.tags) {
    const chip = document.createElement('span');
    chip.className = 'tag-chip';
    chip.textContent = name;
    const x = document.createElement('button');
    x.type = 'button';
    x.className = 'tag-remove';
    x.textContent = '×';
    x.setAttribute('aria-label', interpolate(gettext('Remove tag %(name)s'), { name }, true));
    x.addEventListener('click', async () => {
      try {
        await api('DELETE', `/api/v1/kefu/visitors/${visitorId}/tags/${encodeURIComponent(name)}`);
        loadProfile(visitorId, true);
      } catch (err) {
        toast(err.message);
      }
    });
    chip.append(x);
    tags.append(chip);
  }
  const notes = $('v-notes');
  notes.replaceChildren();
  for (const n of p.notes) {
    const li = document.createElement('li');
    li.textContent = n.text;
    const meta = document.createElement('span');
    meta.className = 'hint';
    meta.textContent = ` — ${n.author}, ${fullTime(n.created_at)}`;
    li.append(meta);
    notes.append(li);
  }
  const trail = $('v-trail');
  trail.replaceChildren();
  for (const t of p.trail) {
    const li = document.createElement('li');
    li.textContent = `${hhmm(t.at)} ${t.title || t.url}`;
    li.title = t.url;
    trail.append(li);
  }
  const past = $('v-past');
  past.replaceChildren();
  for (const c of p.conversations) {
    const li = document.createElement('li');
    const stars = c.csat ? ' ' + '★'.repeat(c.csat) : '';
    li.textContent = `${fullTime(c.created_at)} · ${c.agent || c.workgroup} · ${STATUS_TEXT[c.status] || c.status}${stars}`;
    past.append(li);
  }
}

$('tag-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('tag-name').value.trim();
  if (!name || !profileFor) return;
  try {
    await api('POST', `/api/v1/kefu/visitors/${profileFor}/tags`, { name });
    $('tag-name').value = '';
    loadProfile(profileFor, true);
  } catch (err) {
    toast(err.message);
  }
});

$('note-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('note-text').value.trim();
  if (!text || !profileFor) return;
  try {
    await api('POST', `/api/v1/kefu/visitors/${profileFor}/notes`, { text });
    $('note-text').value = '';
    loadProfile(profileFor, true);
  } catch (err) {
    toast(err.message);
  }
});

// ---- the queues of one's workgroups: see who waits, take one ----------------------------
let queueTimer = null;
function queueChanged() {
  clearTimeout(queueTimer);
  queueTimer = setTimeout(loadQueue, 150); // one fetch for a burst of changes
}

let queueSeq = 0; // answers may arrive out of order: only the newest is drawn
async function loadQueue() {
  if (!config.user.is_agent) return;
  const seq = ++queueSeq;
  let data;
  try {
    data = await api('GET', '/api/v1/kefu/queue');
  } catch (e) {
    return;
  }
  if (seq !== queueSeq) return;
  const list = $('queue-list');
  list.replaceChildren();
  let count = 0;
  for (const wg of data.workgroups) {
    for (const w of wg.waiting) {
      count++;
      const li = document.createElement('li');
      li.className = 'queue-item';
      li.dataset.session = w.session_id;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = w.visitor;
      const preview = document.createElement('span');
      preview.className = 'preview';
      preview.textContent = `${wg.name} · ${w.preview}`;
      li.append(who, preview);
      if (wg.allow_pick) {
        const take = document.createElement('button');
        take.type = 'button';
        take.className = 'btn btn-small queue-take';
        take.textContent = gettext('Take');
        take.addEventListener('click', async () => {
          take.disabled = true;
          try {
            const r = await api('POST', `/api/v1/kefu/queue/${w.session_id}/pick`);
            if (convs.has(r.conversation_id)) select(r.conversation_id);
            else selectOnArrival = r.conversation_id;
          } catch (err) {
            toast(err.message);
          }
          loadQueue();
        });
        li.append(take);
      }
      list.append(li);
    }
  }
  $('queue-count').textContent = String(count);
  $('queue-box').hidden = count === 0;
}
loadQueue();

// ---- transfer and invite ----------------------------------------------------------------
let teamLoadedAt = 0;
async function loadTeam() {
  if (Date.now() - teamLoadedAt < 10000) return;
  teamLoadedAt = Date.now();
  let team;
  try {
    team = await api('GET', '/api/v1/kefu/agents');
  } catch (e) {
    return;
  }
  const agents = $('transfer-agents');
  const groups = $('transfer-groups');
  agents.replaceChildren();
  groups.replaceChildren();
  for (const a of team.agents) {
    if (a.id === config.user.id || a.status !== 'online') continue;
    const o = document.createElement('option');
    o.value = 'a:' + a.id;
    o.textContent = `${a.name} (${a.open_count}/${a.max_concurrent})`;
    agents.append(o);
  }
  for (const w of team.workgroups) {
    const o = document.createElement('option');
    o.value = 'w:' + w.id;
    o.textContent = w.name;
    groups.append(o);
  }
}

$('transfer-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const c = convs.get(selected);
  const target = $('transfer-target').value;
  if (!c || !target) return;
  const body = { conversation_id: c.id, note: $('transfer-note').value.trim() };
  if (target.startsWith('a:')) body.to_agent_id = Number(target.slice(2));
  else body.to_workgroup_id = Number(target.slice(2));
  try {
    const t = await api('POST', '/api/v1/kefu/transfers', body);
    $('transfer-note').value = '';
    $('transfer-status').textContent = t.status === 'pending'
      ? interpolate(gettext('Waiting for %(name)s to accept…'), { name: t.to_agent.name }, true)
      : gettext('Transferred.');
  } catch (err) {
    toast(err.message);
  }
});

$('invite-btn').addEventListener('click', async () => {
  const c = convs.get(selected);
  const target = $('transfer-target').value;
  if (!c || !target.startsWith('a:')) {
    toast(gettext('Choose a colleague to invite.'));
    return;
  }
  try {
    const r = await api('POST', '/api/v1/kefu/invites', { conversation_id: c.id, agent_id: Number(target.slice(2)) });
    toast(interpolate(gettext('%(name)s was invited.'), { name: r.agent.name }, true));
  } catch (err) {
    toast(err.message);
  }
});

// Offers from colleagues: accept or decline, until answered or expired.
const offers = new Map(); // transfer id -> element
let selectOnArrival = null;
function showOffer(t) {
  let el = offers.get(t.id);
  if (t.status !== 'pending' || !t.to_agent || t.to_agent.id !== config.user.id) {
    if (el) el.remove();
    offers.delete(t.id);
    return;
  }
  if (el) return;
  el = document.createElement('div');
  el.className = 'transfer-offer';
  el.dataset.id = t.id;
  const text = document.createElement('p');
  text.textContent = interpolate(gettext('%(agent)s wants to transfer %(visitor)s to you.'), { agent: t.from.name, visitor: t.visitor.name }, true);
  el.append(text);
  if (t.note) {
    const note = document.createElement('p');
    note.className = 'hint';
    note.textContent = t.note;
    el.append(note);
  }
  for (const [action, label] of [['accept', gettext('Accept')], ['decline', gettext('Decline')]]) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn btn-small' + (action === 'accept' ? ' btn-primary' : '');
    b.dataset.action = action;
    b.textContent = label;
    b.addEventListener('click', async () => {
      try {
        const r = await api('POST', `/api/v1/kefu/transfers/${t.id}/${action}`);
        showOffer(r);
        if (action === 'accept') {
          if (convs.has(r.conversation_id)) select(r.conversation_id);
          else selectOnArrival = r.conversation_id; // its conversation.assigned is on its way
        }
      } catch (err) {
        toast(err.message);
        showOffer({ ...t, status: 'gone' });
      }
    });
    el.append(b);
  }
  offers.set(t.id, el);
  $('transfer-offers').append(el);
}

function onTransfer(t) {
  showOffer(t);
  if (t.from && t.from.id === config.user.id && t.status !== 'pending') {
    const name = (t.to_agent && t.to_agent.name) || (t.to_workgroup && t.to_workgroup.name) || '';
    const text = {
      accepted: gettext('%(name)s took the conversation.'),
      declined: gettext('%(name)s declined the transfer.'),
      expired: gettext('%(name)s did not answer the transfer.'),
      cancelled: gettext('The transfer was cancelled.'),
    }[t.status];
    if (text) toast(interpolate(text, { name }, true));
    $('transfer-status').textContent = '';
  }
}

async function loadOffers() {
  try {
    const data = await api('GET', '/api/v1/kefu/transfers');
    for (const t of data.transfers) showOffer(t);
  } catch (e) { /* shown when the next event arrives */ }
}
if (config.user.is_agent) loadOffers();

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
    renderSide(false);
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

let accountDisabled = false;

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
      queueChanged(); // what moved while the socket was down
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
        renderSide(false);
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
      const countable = kind === 'theirs' && m.msg_type !== 'recall';
      if (kind !== 'mine') client.updateRead(m.conversation_id, { delivered_seq: m.seq });
      const mentionsMe = countable && (m.mentions || []).some((k) => k === me || k === 'all');
      if (m.conversation_id === selected) {
        const stick = nearBottom() || kind === 'mine';
        showMessage(m);
        if (kind === 'theirs' && c.kind === 'visitor') suggestReplies();
        if (stick) scrollToBottom();
        if (document.visibilityState === 'visible') markSelectedRead(false);
        else if (countable) c.unread = (c.unread || 0) + 1;
        if (kind === 'mine' && c.kind === 'group') fetchGroupReceipts();
      } else if (countable) {
        c.unread = (c.unread || 0) + 1;
      }
      if (mentionsMe && (m.conversation_id !== selected || document.visibilityState !== 'visible')) c.mentioned = true;
      if (countable && (!c.notifications_off || mentionsMe)) notify(c, m);
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
      applyState(el, f.conversation_id, f.seq);
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
        if (f.conversation_id === selected) {
          if (c && c.kind === 'group') fetchGroupReceipts();
          else refreshStates();
        }
      }
      break;
    }

    case 'conversation.added': {
      const isNew = !convs.has(f.conversation.id);
      updateConversation(f.conversation);
      renderList();
      if (isNew && items.has(f.conversation.id)) flash(items.get(f.conversation.id));
      break;
    }

    case 'conversation.updated':
      if (convs.has(f.conversation_id)) refreshConversation(f.conversation_id);
      else resyncSoon();
      break;

    case 'conversation.removed': {
      const c = convs.get(f.conversation_id);
      if (c && f.conversation_id === selected) {
        toast(f.reason === 'left'
          ? gettext('You left the group.')
          : interpolate(gettext('You were removed from %(name)s.'), { name: titleOf(c) }, true));
      }
      dropConversation(f.conversation_id);
      break;
    }

    case 'member.state': {
      const c = convs.get(f.conversation_id);
      if (!c) break;
      for (const k of ['role', 'pinned', 'notifications_off', 'archived', 'archived_at', 'muted_until']) {
        if (k in f) c[k] = f[k];
      }
      renderList();
      if (f.conversation_id === selected) {
        renderHeader();
        if (c.kind === 'group') renderGroup(c, false);
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
      if (isNew && items.has(c.id)) flash(items.get(c.id));
      if (isNew && c.kind === 'visitor') announceAssignment(c);
      if (c.id === selectOnArrival) {
        selectOnArrival = null;
        select(c.id);
      }
      if (c.id === selected) {
        renderHeader();
        renderSide(false);
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
        if (c.kind === 'group') renderGroup(c, false);
        renderHeader();
        renderSide(false);
        renderTyping();
        scrollToBottom();
      }
      renderList();
      break;
    }

    case 'assist.draft':
      onDraft(f);
      break;

    case 'session.reminder': {
      const text = interpolate(gettext('%(visitor)s has been waiting %(seconds)s s for your answer.'), { visitor: f.visitor.name, seconds: f.waiting_s }, true);
      toast(text);
      const c = convs.get(f.conversation_id);
      if (c && 'Notification' in window && Notification.permission === 'granted') {
        try {
          new Notification(titleOf(c), { body: text, tag: 'r' + c.id });
        } catch (e) { /* notifications blocked */ }
      }
      break;
    }

    case 'queue.changed':
      queueChanged();
      break;

    case 'visitor.updated':
      if (f.visitor_id === profileFor) loadProfile(profileFor, true);
      break;

    case 'csat.submitted': {
      const c = convs.get(f.conversation_id);
      if (c && c.session) c.session.csat = f.csat;
      if (f.conversation_id === selected) renderVisitor();
      break;
    }

    case 'transfer.requested':
    case 'transfer.updated':
      onTransfer(f.transfer);
      break;

    case 'notification.new':
    case 'ticket.updated':
      ticketsUi.onFrame(f);
      break;

    case 'account.disabled':
      accountDisabled = true; // the socket closes next (4401): say why
      break;

    case 'error':
      onError(f);
      break;
    default:
  }
}

function flash(el) {
  el.classList.add('fresh');
  setTimeout(() => el.classList.remove('fresh'), 2500);
}

// Desktop notifications for team messages when the page is in the background (permission is
// asked for on the first click anywhere, as browsers require a user gesture).
function notify(c, m) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  if (document.visibilityState === 'visible') return;
  try {
    const n = new Notification(titleOf(c), { body: previewText({ ...m, conversation_kind: c.kind }, me), tag: 'c' + c.id });
    n.onclick = () => {
      window.focus();
      select(c.id);
    };
  } catch (e) { /* not allowed here */ }
}

document.addEventListener('click', () => {
  if ('Notification' in window && Notification.permission === 'default') Notification.requestPermission().catch(() => {});
}, { once: true });

// A new visitor conversation: a short two-tone chime (Web Audio, no file to load) and, when the
// inbox is in the background, a desktop notification.
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

function announceAssignment(c) {
  chime();
  document.body.dataset.lastAssigned = c.id; // for tests and styling
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  if (document.visibilityState === 'visible') return;
  try {
    const n = new Notification(gettext('New conversation'), { body: titleOf(c), tag: 'a' + c.id });
    n.onclick = () => {
      window.focus();
      select(c.id);
    };
  } catch (e) { /* not allowed here */ }
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
  if (!c || mutedNow(c) || !content) return;
  const extra = {};
  const mentions = [...mentionPicks].filter(([at]) => content.includes(at)).map(([, key]) => key);
  if (mentions.length) extra.mentions = [...new Set(mentions)];
  if (c.kind === 'visitor' && $('internal-toggle').checked) extra.internal = true;
  sendItem(client.send(selected, content, extra));
  composer.value = '';
  mentionPicks.clear();
  hideMentions();
}

function sendItem(item, label) {
  if (label) item.label = label;
  showPending(item);
  scrollToBottom();
}

// ---- attachments, voice, emoji, stickers --------------------------------------------------
const uploadStatus = $('upload-status');

async function sendFile(file, kind, durationMs) {
  const id = selected;
  const c = convs.get(id);
  if (!c || mutedNow(c)) return;
  const limit = kind === 'image' ? config.max_image_bytes : config.max_file_bytes;
  if (limit && file.size > limit) {
    toast(interpolate(gettext('%(name)s is too large (the limit is %(limit)s).'), { name: file.name || '', limit: formatSize(limit) }, true));
    return;
  }
  const label = file.name || gettext('voice message');
  uploadStatus.textContent = interpolate(gettext('Uploading %(name)s…'), { name: label }, true);
  const onProgress = (x) => {
    uploadStatus.textContent = interpolate(gettext('Uploading %(name)s… %(pct)s%'), { name: label, pct: Math.round(x * 100) }, true);
  };
  let attachment;
  try {
    attachment = await upload(file, { conversationId: id, kind, durationMs, onProgress });
  } catch (e) {
    let error = e;
    // The browser's guess of the type can be wrong (say, an audio file that is not a clip):
    // anything can still go as a plain file.
    if (kind !== 'file' && e.status === 400) {
      try {
        attachment = await upload(file, { conversationId: id, kind: 'file', onProgress });
        kind = 'file';
      } catch (e2) {
        error = e2;
      }
    }
    if (!attachment) {
      uploadStatus.textContent = '';
      toast(error.message);
      return;
    }
  }
  uploadStatus.textContent = '';
  const extra = { msg_type: kind, attachment_id: attachment.id };
  if (c.kind === 'visitor' && $('internal-toggle').checked) extra.internal = true;
  sendItem(client.send(id, '', extra), previewText({ msg_type: kind, attachment, content: '' }, me));
}

$('attach-btn').addEventListener('click', () => $('attach-input').click());
$('attach-input').addEventListener('change', (e) => {
  const files = [...e.target.files];
  e.target.value = '';
  (async () => {
    for (const file of files) await sendFile(file, kindForFile(file));
  })();
});

let stopRecording = null;
$('voice-btn').addEventListener('click', async () => {
  const btn = $('voice-btn');
  if (stopRecording) {
    const stop = stopRecording;
    stopRecording = null;
    btn.setAttribute('aria-pressed', 'false');
    uploadStatus.textContent = '';
    const { blob, durationMs } = await stop();
    if (durationMs < 500) return; // a slip of the finger
    const ext = (blob.type.split('/')[1] || 'webm').split(';')[0];
    await sendFile(new File([blob], `voice.${ext}`, { type: blob.type }), 'voice', durationMs);
    return;
  }
  try {
    stopRecording = await startRecording();
  } catch (e) {
    toast(e.message || gettext('The microphone is not available.'));
    return;
  }
  btn.setAttribute('aria-pressed', 'true');
  uploadStatus.textContent = gettext('Recording… click 🎤 again to send.');
});

function closePickers() {
  $('emoji-picker').hidden = true;
  $('sticker-picker').hidden = true;
}

function insertAtCursor(text) {
  const start = composer.selectionStart ?? composer.value.length;
  const end = composer.selectionEnd ?? composer.value.length;
  composer.value = composer.value.slice(0, start) + text + composer.value.slice(end);
  composer.selectionStart = composer.selectionEnd = start + text.length;
  composer.focus();
}

$('emoji-btn').addEventListener('click', () => {
  const picker = $('emoji-picker');
  const open = picker.hidden;
  closePickers();
  if (!open) return;
  if (!picker.children.length) {
    for (const e of EMOJI) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'emoji';
      b.textContent = e;
      b.addEventListener('click', () => {
        insertAtCursor(e);
        picker.hidden = true;
      });
      picker.append(b);
    }
  }
  picker.hidden = false;
});

let stickers = null;
$('sticker-btn').addEventListener('click', async () => {
  const picker = $('sticker-picker');
  const open = picker.hidden;
  closePickers();
  if (!open) return;
  if (!stickers) {
    try {
      stickers = (await api('GET', '/api/v1/im/stickers')).stickers;
    } catch (e) {
      toast(e.message);
      return;
    }
    picker.replaceChildren();
    for (const st of stickers) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'sticker';
      b.title = st.name;
      const img = document.createElement('img');
      img.src = st.url;
      img.alt = st.name;
      b.append(img);
      b.addEventListener('click', () => {
        picker.hidden = true;
        const c = convs.get(selected);
        if (!c || mutedNow(c)) return;
        sendItem(client.send(selected, '', { msg_type: 'sticker', sticker_id: st.id }), gettext('[Sticker]'));
      });
      picker.append(b);
    }
    if (!stickers.length) {
      const p = document.createElement('p');
      p.className = 'pane-empty';
      p.textContent = gettext('No stickers yet. Admins add them in the back office.');
      picker.append(p);
    }
  }
  picker.hidden = false;
});

// ---- @mentions ----------------------------------------------------------------------------
const mentionList = $('mention-list');
let mentionChoices = [];
let mentionActive = 0;

async function groupMembersOf(c) {
  if (!groupMembers) {
    const data = await api('GET', `/api/v1/im/groups/${c.id}/members`);
    groupMembers = data.members;
    for (const gm of groupMembers) names.set(gm.member.key, gm.member.name);
  }
  return groupMembers;
}

/** People that may be @mentioned in the selected conversation whose name starts with `q`. */
async function mentionCandidates(c, q) {
  const needle = q.toLowerCase();
  if (c.kind === 'group') {
    const people = (await groupMembersOf(c))
      .map((gm) => gm.member)
      .filter((m) => m.key !== me && m.name.toLowerCase().includes(needle));
    if (isStaff(c.role) && gettext('all').toLowerCase().startsWith(needle)) {
      people.unshift({ key: 'all', name: gettext('all') });
    }
    return people.slice(0, 8);
  }
  if (c.kind === 'visitor') {
    // Internal notes: any colleague, who is then added to the conversation.
    const params = new URLSearchParams({ limit: '8' });
    if (q) params.set('q', q);
    const data = await api('GET', '/api/v1/org/directory?' + params);
    return data.users.filter((u) => u.key !== me).map((u) => ({ key: u.key, name: u.name }));
  }
  return [];
}

function hideMentions() {
  mentionList.hidden = true;
  mentionChoices = [];
}

function renderMentions() {
  mentionList.replaceChildren();
  mentionChoices.forEach((m, i) => {
    const li = document.createElement('li');
    li.role = 'option';
    li.className = 'mention-option';
    li.textContent = '@' + m.name;
    li.setAttribute('aria-selected', String(i === mentionActive));
    li.addEventListener('mousedown', (e) => {
      e.preventDefault();
      chooseMention(m);
    });
    mentionList.append(li);
  });
  mentionList.hidden = !mentionChoices.length;
}

function mentionQuery() {
  const upto = composer.value.slice(0, composer.selectionStart);
  const hit = upto.match(/(?:^|\s)@([^\s@]{0,30})$/);
  return hit ? hit[1] : null;
}

let mentionSeq = 0;
async function updateMentions() {
  const c = convs.get(selected);
  const q = mentionQuery();
  if (!c || q == null || c.kind === 'direct') {
    hideMentions();
    return;
  }
  const ticket = ++mentionSeq;
  let found = [];
  try {
    found = await mentionCandidates(c, q);
  } catch (e) { /* leave the list closed */ }
  if (ticket !== mentionSeq) return;
  mentionChoices = found;
  mentionActive = 0;
  renderMentions();
}

function chooseMention(m) {
  const q = mentionQuery();
  if (q == null) return;
  const at = composer.selectionStart;
  const start = at - q.length - 1;
  const text = '@' + m.name + ' ';
  composer.value = composer.value.slice(0, start) + text + composer.value.slice(at);
  composer.selectionStart = composer.selectionEnd = start + text.length;
  mentionPicks.set('@' + m.name, m.key);
  if (m.key !== 'all') names.set(m.key, m.name);
  if (selectedIsVisitor()) $('internal-toggle').checked = true; // a colleague is pulled in as a note
  hideMentions();
  composer.focus();
}

function selectedIsVisitor() {
  const c = convs.get(selected);
  return !!c && c.kind === 'visitor';
}

// ---- canned responses: "/shortcut" at the start of a line ---------------------------------
const cannedList = $('canned-list');
let canned = null; // all the agent may use, loaded on first "/"
let cannedChoices = [];
let cannedActive = 0;

function cannedQuery() {
  const upto = composer.value.slice(0, composer.selectionStart);
  const hit = upto.match(/(?:^|\n)\/([^\s/]{0,32})$/);
  return hit ? hit[1].toLowerCase() : null;
}

function hideCanned() {
  cannedList.hidden = true;
  cannedChoices = [];
}

function renderCanned() {
  cannedList.replaceChildren();
  cannedChoices.forEach((c, i) => {
    const li = document.createElement('li');
    li.role = 'option';
    li.className = 'mention-option canned-option';
    li.setAttribute('aria-selected', String(i === cannedActive));
    const key = document.createElement('strong');
    key.textContent = '/' + c.shortcut;
    const title = document.createElement('span');
    title.textContent = ' ' + c.title + (c.shared ? '' : ' · ' + gettext('mine'));
    li.append(key, title);
    li.addEventListener('mousedown', (e) => {
      e.preventDefault();
      chooseCanned(c);
    });
    cannedList.append(li);
  });
  cannedList.hidden = !cannedChoices.length;
}

let cannedLoading = null; // the one request for the list, shared by the keystrokes that wait
async function updateCanned() {
  const c = convs.get(selected);
  if (cannedQuery() == null || !c || c.kind !== 'visitor') {
    hideCanned();
    return;
  }
  if (!canned) {
    cannedLoading =
      cannedLoading ||
      api('GET', '/api/v1/kefu/canned').then(
        (data) => data.canned,
        () => [],
      );
    canned = await cannedLoading;
  }
  // what is typed *now*: a keystroke (or a choice) may have come while the list was loading
  const q = cannedQuery();
  if (q == null || convs.get(selected) !== c) {
    hideCanned();
    return;
  }
  cannedChoices = canned
    .filter((x) => x.shortcut.toLowerCase().startsWith(q) || x.title.toLowerCase().includes(q))
    .slice(0, 8);
  cannedActive = 0;
  renderCanned();
}

function chooseCanned(c) {
  const q = cannedQuery();
  if (q == null) return;
  const at = composer.selectionStart;
  const start = at - q.length - 1;
  composer.value = composer.value.slice(0, start) + c.content + composer.value.slice(at);
  composer.selectionStart = composer.selectionEnd = start + c.content.length;
  hideCanned();
  composer.focus();
}

const cannedManager = setupCanned({
  toast,
  insert(text) {
    const at = composer.selectionStart ?? composer.value.length;
    const end = composer.selectionEnd ?? at;
    composer.value = composer.value.slice(0, at) + text + composer.value.slice(end);
    composer.selectionStart = composer.selectionEnd = at + text.length;
    composer.dispatchEvent(new Event('input'));
    composer.focus();
  },
  onChanged() {
    canned = null;
    cannedLoading = null;
  },
});
$('canned-btn').addEventListener('click', () => cannedManager.open(composer.value));
$('canned-link').addEventListener('click', () => cannedManager.open('', false));

// Runs before the composer's own Enter handling (capture on the form).
$('composer-form').addEventListener('keydown', (e) => {
  if (!cannedList.hidden && cannedChoices.length) {
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      cannedActive = (cannedActive + (e.key === 'ArrowDown' ? 1 : -1) + cannedChoices.length) % cannedChoices.length;
      renderCanned();
    } else if (e.key === 'Enter' || e.key === 'Tab') {
      chooseCanned(cannedChoices[cannedActive]);
    } else if (e.key === 'Escape') {
      hideCanned();
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    return;
  }
  if (mentionList.hidden || !mentionChoices.length) return;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    mentionActive = (mentionActive + (e.key === 'ArrowDown' ? 1 : -1) + mentionChoices.length) % mentionChoices.length;
    renderMentions();
  } else if (e.key === 'Enter' || e.key === 'Tab') {
    chooseMention(mentionChoices[mentionActive]);
  } else if (e.key === 'Escape') {
    hideMentions();
  } else {
    return;
  }
  e.preventDefault();
  e.stopPropagation();
}, true);
composer.addEventListener('input', updateMentions);
composer.addEventListener('input', updateCanned);
composer.addEventListener('blur', () => setTimeout(hideCanned, 150));
composer.addEventListener('blur', () => setTimeout(hideMentions, 150));

bindComposer({
  form: $('composer-form'),
  textarea: composer,
  send: sendNow,
  onInput: () => {
    if (selected != null && composer.value.trim()) client.typing(selected);
  },
});

$('make-ticket').addEventListener('click', () => {
  const c = convs.get(selected);
  if (c) ticketsUi.openNewTicket({ conversationId: c.id, subject: titleOf(c) });
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

// ---- conversation settings: pin, do-not-disturb, archive ---------------------------------
async function changeSettings(body) {
  const id = selected;
  try {
    const c = await api('PATCH', `/api/v1/im/conversations/${id}/settings`, body);
    updateConversation(c);
    renderList();
    if (id === selected) renderHeader();
  } catch (e) {
    toast(e.message);
  }
}

$('pin-btn').addEventListener('click', () => changeSettings({ pinned: !convs.get(selected).pinned }));
$('dnd-btn').addEventListener('click', () => changeSettings({ notifications_off: !convs.get(selected).notifications_off }));
$('archive-btn').addEventListener('click', () => changeSettings({ archived: !convs.get(selected).archived }));

// ---- new chats and groups -----------------------------------------------------------------
async function openConversation(c) {
  updateConversation(c);
  renderList();
  select(c.id);
}

$('new-chat').addEventListener('click', async () => {
  const [person] = await pickPeople({ title: gettext('Chat with a colleague'), multiple: false, exclude: new Set([me]) });
  if (!person) return;
  try {
    openConversation(await api('POST', '/api/v1/im/conversations/direct', { user_id: person.id }));
  } catch (e) {
    toast(e.message);
  }
});

let newGroupPeople = [];
$('new-group').addEventListener('click', () => {
  newGroupPeople = [];
  $('new-group-form').reset();
  $('ng-members').textContent = '';
  $('ng-error').textContent = '';
  $('group-dialog').showModal();
  $('ng-title').focus();
});
$('ng-cancel').addEventListener('click', () => $('group-dialog').close());
$('ng-pick').addEventListener('click', async () => {
  const chosen = await pickPeople({
    title: gettext('Choose members'),
    multiple: true,
    exclude: new Set([me]),
    confirmText: gettext('Add'),
  });
  if (chosen.length) newGroupPeople = chosen;
  $('ng-members').textContent = newGroupPeople.map((u) => u.name).join(', ');
});
$('new-group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('ng-create').disabled = true;
  try {
    const c = await api('POST', '/api/v1/im/groups', {
      title: $('ng-title').value.trim(),
      category: $('ng-category').value.trim(),
      announcement: $('ng-announcement').value.trim(),
      member_ids: newGroupPeople.map((u) => u.id),
    });
    $('group-dialog').close();
    openConversation(c);
  } catch (err) {
    $('ng-error').textContent = err.message;
  } finally {
    $('ng-create').disabled = false;
  }
});

// ---- group panel --------------------------------------------------------------------------
const ROLE_TEXT = { owner: gettext('owner'), admin: gettext('admin'), member: gettext('member') };
const MUTE_CHOICES = [
  [10, gettext('Mute 10 minutes')],
  [60, gettext('Mute 1 hour')],
  [24 * 60, gettext('Mute 1 day')],
];

function renderGroup(c, reload) {
  const mine = c.role;
  const editable = isStaff(mine) && !c.closed;
  const g = c.group || {};
  if (reload || document.activeElement === document.body || !$('group-form').contains(document.activeElement)) {
    $('g-title').value = c.title || '';
    $('g-category').value = g.category || '';
    $('g-announcement').value = g.announcement || '';
    $('g-all-muted').checked = !!g.all_muted;
  }
  for (const id of ['g-title', 'g-category', 'g-announcement', 'g-all-muted', 'g-avatar', 'g-save']) $(id).disabled = !editable;
  $('g-save').hidden = !editable;
  $('g-count').textContent = interpolate(gettext('%(n)s members'), { n: c.member_count || 0 }, true);
  $('g-invite').hidden = !editable;
  $('g-leave').hidden = mine === 'owner' || !!c.closed;
  $('g-dissolve').hidden = mine !== 'owner' || !!c.closed;
  if (reload || !groupMembers) {
    groupMembers = null;
    groupMembersOf(c)
      .then(() => {
        if (c.id !== selected) return;
        renderMembers(c);
        // @mentions shown before the names were known get their highlight now
        for (const m of (store.get(c.id) || new Map()).values()) if ((m.mentions || []).length) showMessage(m);
      })
      .catch((e) => toast(e.message));
  } else {
    renderMembers(c);
  }
}

function memberButton(text, onClick, cls = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'link-btn ' + cls;
  b.textContent = text;
  b.addEventListener('click', onClick);
  return b;
}

async function memberAction(c, userId, method, body) {
  try {
    await api(method, `/api/v1/im/groups/${c.id}/members/${userId}`, body);
  } catch (e) {
    toast(e.message);
  }
  if (c.id === selected) renderGroup(c, true);
}

function renderMembers(c) {
  const ul = $('g-members');
  ul.replaceChildren();
  const mine = c.role;
  for (const gm of groupMembers || []) {
    const li = document.createElement('li');
    li.className = 'member';
    li.dataset.key = gm.member.key;
    const name = document.createElement('span');
    name.className = 'member-name';
    name.textContent = gm.member.name + (gm.member.key === me ? ' ' + gettext('(you)') : '');
    const role = document.createElement('span');
    role.className = 'member-role';
    role.dataset.role = gm.role;
    role.textContent = gm.role === 'member' ? '' : ROLE_TEXT[gm.role];
    li.append(name, role);
    const muted = gm.muted_until && Date.parse(gm.muted_until) > Date.now();
    if (muted) {
      const m = document.createElement('span');
      m.className = 'member-muted';
      m.textContent = '🔇';
      m.title = interpolate(gettext('Muted until %(time)s'), { time: fullTime(gm.muted_until) }, true);
      li.append(m);
    }
    const actions = document.createElement('span');
    actions.className = 'member-actions';
    const userId = gm.member.id;
    const other = gm.member.key !== me && !c.closed;
    if (other && mine === 'owner') {
      actions.append(gm.role === 'admin'
        ? memberButton(gettext('Remove admin'), () => memberAction(c, userId, 'PATCH', { role: 'member' }))
        : memberButton(gettext('Make admin'), () => memberAction(c, userId, 'PATCH', { role: 'admin' })));
      actions.append(memberButton(gettext('Make owner'), async () => {
        if (!confirm(interpolate(gettext('Make %(name)s the owner of this group?'), { name: gm.member.name }, true))) return;
        try {
          updateConversation(await api('POST', `/api/v1/im/groups/${c.id}/owner`, { user_id: userId }));
        } catch (e) {
          toast(e.message);
        }
        refreshConversation(c.id);
      }));
    }
    const canManage = other && (mine === 'owner' || (mine === 'admin' && gm.role === 'member'));
    if (canManage) {
      if (muted) {
        actions.append(memberButton(gettext('Unmute'), () => memberAction(c, userId, 'PATCH', { muted_minutes: 0 })));
      } else {
        const sel = document.createElement('select');
        sel.className = 'member-mute';
        sel.setAttribute('aria-label', gettext('Mute'));
        const first = new Option(gettext('Mute…'), '');
        sel.append(first, ...MUTE_CHOICES.map(([min, label]) => new Option(label, String(min))));
        sel.addEventListener('change', () => sel.value && memberAction(c, userId, 'PATCH', { muted_minutes: Number(sel.value) }));
        actions.append(sel);
      }
      actions.append(memberButton(gettext('Remove'), () => {
        if (confirm(interpolate(gettext('Remove %(name)s from the group?'), { name: gm.member.name }, true))) {
          memberAction(c, userId, 'DELETE');
        }
      }, 'danger'));
    }
    li.append(actions);
    ul.append(li);
  }
}

$('group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const c = convs.get(selected);
  if (!c) return;
  const body = {
    title: $('g-title').value.trim(),
    category: $('g-category').value.trim(),
    announcement: $('g-announcement').value.trim(),
    all_muted: $('g-all-muted').checked,
  };
  const file = $('g-avatar').files[0];
  try {
    if (file) body.avatar_id = (await upload(file, { kind: 'image' })).id;
    updateConversation(await api('PATCH', `/api/v1/im/groups/${c.id}`, body));
    $('g-avatar').value = '';
    toast(gettext('Saved.'));
  } catch (err) {
    toast(err.message);
  }
  renderList();
  if (c.id === selected) renderHeader();
});

$('g-invite').addEventListener('click', async () => {
  const c = convs.get(selected);
  if (!c) return;
  const members = await groupMembersOf(c);
  const chosen = await pickPeople({
    title: gettext('Invite people'),
    multiple: true,
    exclude: new Set(members.map((gm) => gm.member.key)),
    confirmText: gettext('Invite'),
  });
  if (!chosen.length) return;
  try {
    await api('POST', `/api/v1/im/groups/${c.id}/members`, { user_ids: chosen.map((u) => u.id) });
  } catch (e) {
    toast(e.message);
  }
  refreshConversation(c.id);
});

$('g-leave').addEventListener('click', async () => {
  const c = convs.get(selected);
  if (!c || !confirm(gettext('Leave this group?'))) return;
  try {
    await api('DELETE', `/api/v1/im/groups/${c.id}/members/${config.user.id}`);
    dropConversation(c.id);
  } catch (e) {
    toast(e.message);
  }
});

$('g-dissolve').addEventListener('click', async () => {
  const c = convs.get(selected);
  if (!c || !confirm(gettext('Dissolve this group for everyone? Its history stays readable.'))) return;
  try {
    await api('DELETE', `/api/v1/im/groups/${c.id}`);
  } catch (e) {
    toast(e.message);
  }
});

// ---- search -------------------------------------------------------------------------------
const searchInput = $('search-input');
const searchResults = $('search-results');
let searchTimer = null;
let searchSeq = 0;

async function runSearch() {
  const q = searchInput.value.trim();
  const ticket = ++searchSeq;
  if (!q) {
    searchResults.hidden = true;
    searchResults.replaceChildren();
    return;
  }
  let data;
  try {
    data = await api('GET', '/api/v1/im/search?' + new URLSearchParams({ q, limit: '30' }));
  } catch (e) {
    if (ticket === searchSeq) {
      searchResults.replaceChildren(Object.assign(document.createElement('p'), { className: 'pane-empty', textContent: e.message }));
      searchResults.hidden = false;
    }
    return;
  }
  if (ticket !== searchSeq) return;
  searchResults.replaceChildren();
  const head = document.createElement('p');
  head.className = 'search-head';
  head.textContent = data.results.length
    ? interpolate(gettext('Messages matching “%(q)s”'), { q }, true)
    : interpolate(gettext('No messages match “%(q)s”.'), { q }, true);
  searchResults.append(head);
  for (const r of data.results) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'search-hit';
    const known = convs.get(r.conversation.id);
    const where = document.createElement('span');
    where.className = 'hit-where';
    where.textContent = known ? titleOf(known) : r.conversation.title || '#' + r.conversation.id;
    const when = document.createElement('time');
    when.className = 'hit-time';
    when.textContent = shortTime(r.message.created_at);
    when.title = fullTime(r.message.created_at);
    const who = document.createElement('span');
    who.className = 'hit-text';
    who.textContent = `${(r.message.sender && r.message.sender.name) || ''}: ${r.highlight || r.message.content}`;
    b.append(where, when, who);
    b.addEventListener('click', () => jumpTo(r.conversation.id, r.message.seq));
    searchResults.append(b);
  }
  searchResults.hidden = false;
}

searchInput.addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 300);
});
searchInput.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') {
    searchInput.value = '';
    runSearch();
  }
});

/** Open a conversation at message `seq`: load the page around it and show it highlighted. */
async function jumpTo(conversationId, seq) {
  if (!convs.has(conversationId) && !(await refreshConversation(conversationId))) return;
  select(conversationId);
  let page;
  try {
    page = await api('GET', `/api/v1/im/conversations/${conversationId}/messages?around_seq=${seq}&limit=40`);
  } catch (e) {
    toast(e.message);
    return;
  }
  if (selected !== conversationId) return;
  for (const m of page.messages) {
    if (!client.has(conversationId, m.seq)) ingest(m);
    showMessage((store.get(conversationId) || new Map()).get(m.seq) || m);
  }
  const el = elBySeq.get(seq);
  if (el) {
    el.scrollIntoView({ block: 'center' });
    el.classList.add('hit');
    setTimeout(() => el.classList.remove('hit'), 3000);
  }
}

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
    s.append(
      (accountDisabled
        ? gettext('An administrator disabled your account.')
        : gettext('You have been signed out.')) + ' ',
    );
    const a = document.createElement('a');
    a.href = location.pathname; // the inbox page sends us to the login form
    a.textContent = gettext('Sign in again');
    s.append(a);
  }
}

const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
const client = new WeiyuClient({ url: scheme + location.host + config.ws_path, onFrame, onState });

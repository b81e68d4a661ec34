// The conversation list (customers and team tabs, the tickets tab beside them), which
// conversation is selected, and the frames that add, change or remove conversations.
import { api } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { previewText } from '../weiyu/render.js';
import { fullTime, shortTime } from '../weiyu/time.js';
import { client } from './connection.js';
import { handle } from './frames.js';
import { announceAssignment, flash, toast } from './notifications.js';
import {
  STATUS_TEXT,
  archivedAway,
  config,
  emit,
  lastAt,
  on,
  putConversation,
  selectedConversation,
  state,
  statusOf,
  tabOf,
  titleOf,
} from './store.js';
import { setupTickets } from './tickets.js';

const app = $('app');
const convList = $('conv-list');
const baseTitle = document.title;

// While a ticket is on screen the conversation pane steps aside, and comes back after.
export const ticketsUi = setupTickets({
  toast,
  onActive(showing) {
    if (showing) {
      $('conversation').hidden = true;
      $('no-selection').hidden = true;
      app.classList.add('show-conv');
    } else {
      showConversationPane();
    }
  },
});
handle('notification.new', (f) => ticketsUi.onFrame(f));
handle('ticket.updated', (f) => ticketsUi.onFrame(f));

function showConversationPane() {
  $('ticket-view').hidden = true;
  const c = selectedConversation();
  $('conversation').hidden = !c;
  $('no-selection').hidden = !!c;
  if (!c) app.classList.remove('show-conv');
}

// ---- the list -----------------------------------------------------------------------------
// The customers tab shows either the agent's own conversations (the view "mine", from the
// store) or the rows of another view (views.js fetches them); both draw through renderItem.
// Visitor conversations get a tick box for bulk changes, their labels and how long the customer
// has waited; the preview is the customer's last words, not the lines about who serves them.
const span = (cls) => el('span', cls);
const rows = new Map(); // conversation id -> its .conv-row (tick box + .conv-item button)

/** "waiting 5 min" from an ISO time (ticks: views.js redraws these every few seconds). */
export function waitText(since) {
  const minutes = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 60000));
  const t = minutes < 1
    ? gettext('under a minute')
    : minutes < 60
      ? interpolate(gettext('%(n)s min'), { n: minutes }, true)
      : interpolate(gettext('%(h)s h %(m)s min'), { h: Math.floor(minutes / 60), m: minutes % 60 }, true);
  return interpolate(gettext('waiting %(t)s'), { t }, true);
}

/** What a row of a server view or a conversation of ours says in the list. */
function entryOf(id, row) {
  const c = state.convs.get(id);
  if (c) return { id, c, row };
  return { id, c: null, row };
}

function renderItem({ id, c, row }) {
  let wrap = rows.get(id);
  let el = wrap && wrap.querySelector('.conv-item');
  if (!wrap) {
    wrap = document.createElement('div');
    wrap.className = 'conv-row';
    wrap.dataset.id = id;
    const check = document.createElement('input');
    check.type = 'checkbox';
    check.className = 'conv-check';
    check.addEventListener('change', () => {
      if (check.checked) state.checked.add(id);
      else state.checked.delete(id);
      emit('checked');
    });
    el = document.createElement('button');
    el.type = 'button';
    el.className = 'conv-item';
    el.dataset.id = id;
    const top = span('conv-top');
    const time = document.createElement('time');
    time.className = 'conv-time';
    top.append(span('conv-title'), span('conv-marks'), time);
    const bottom = span('conv-bottom');
    bottom.append(span('conv-mention'), span('conv-preview'), span('conv-unread'));
    const meta = span('conv-meta');
    meta.append(span('conv-status'), span('conv-wait'), span('conv-agent'), span('conv-labels'));
    el.append(top, bottom, meta);
    el.addEventListener('click', () => openEntry(id));
    wrap.append(check, el);
    rows.set(id, wrap);
  }
  const isVisitor = c ? c.kind === 'visitor' : true;
  const status = c ? statusOf(c) : row.status;
  const title = c ? titleOf(c) : row.visitor.name;
  const check = wrap.querySelector('.conv-check');
  check.hidden = !isVisitor;
  check.checked = state.checked.has(id);
  check.setAttribute('aria-label', interpolate(gettext('Select %(name)s'), { name: title }, true));
  el.dataset.status = status;
  el.dataset.member = c ? 'yes' : 'no';
  el.classList.toggle('closed', status === 'closed');
  el.classList.toggle('selected', id === state.selected);
  if (id === state.selected) el.setAttribute('aria-current', 'true');
  else el.removeAttribute('aria-current');
  el.dataset.kind = c ? c.kind : 'visitor';
  el.querySelector('.conv-title').textContent = title;
  el.querySelector('.conv-marks').textContent = c
    ? (c.pinned ? '📌' : '') + (c.notifications_off ? '🔕' : '') + (c.archived ? '🗄' : '')
    : '';
  const mention = el.querySelector('.conv-mention');
  mention.textContent = c && c.mentioned && c.unread ? gettext('[@you]') : '';
  mention.hidden = !mention.textContent;
  const customer = isVisitor ? state.customerMsgs.get(id) : null;
  const at = c
    ? c.last_message_at || (c.last_message && c.last_message.created_at)
    : (customer && customer.created_at) || row.created_at;
  const time = el.querySelector('.conv-time');
  time.textContent = shortTime(at);
  time.title = fullTime(at);
  const preview = el.querySelector('.conv-preview');
  if (customer) preview.textContent = previewText({ ...customer, sender: { type: 'visitor' } }, state.me);
  else {
    const lm = c && c.last_message;
    preview.textContent = lm ? previewText({ ...lm, conversation_kind: c.kind }, state.me) : '';
  }
  const unread = el.querySelector('.conv-unread');
  const n = (c && c.unread) || 0; // zeroed on selection; counts on while the tab is hidden
  unread.textContent = n > 99 ? '99+' : String(n);
  unread.hidden = n === 0;
  unread.classList.toggle('quiet', !!(c && c.notifications_off));
  unread.setAttribute('aria-label', interpolate(gettext('%(count)s unread'), { count: n }, true));
  const st = el.querySelector('.conv-status');
  st.textContent = isVisitor ? STATUS_TEXT[status] || status : c.closed ? gettext('dissolved') : '';
  st.dataset.status = status;
  st.hidden = !st.textContent;
  const wait = el.querySelector('.conv-wait');
  const since = isVisitor && status === 'open' ? state.waitingSince.get(id) : null;
  if (since) {
    wait.dataset.since = since;
    wait.textContent = waitText(since);
    wait.title = fullTime(since);
  } else {
    delete wait.dataset.since;
    wait.textContent = '';
  }
  wait.hidden = !since;
  const agent = el.querySelector('.conv-agent');
  const serving = row && row.agent && row.agent.id !== config.user.id ? row.agent.name : '';
  agent.textContent = serving ? interpolate(gettext('with %(name)s'), { name: serving }, true) : '';
  agent.hidden = !serving;
  const labelsEl = el.querySelector('.conv-labels');
  labelsEl.replaceChildren(...(isVisitor ? state.convLabels.get(id) || [] : []).map(labelChip));
  return wrap;
}

/** A label as a small coloured chip (its colour on its border and dot). */
export function labelChip(label) {
  const chip = span('label-chip');
  chip.dataset.labelId = label.id;
  chip.style.setProperty('--label-color', label.color);
  chip.textContent = label.name;
  return chip;
}

/** Click on a list entry: open a conversation of ours; take a waiting one; otherwise say who has it. */
async function openEntry(id) {
  if (state.convs.has(id)) {
    select(id);
    return;
  }
  const row = (state.viewRows || []).find((r) => r.conversation_id === id);
  if (!row) return;
  if (row.status === 'queued') {
    await takeRow(row);
  } else if (config.monitor_url) {
    window.open(`${config.monitor_url}conversations/${id}/`, '_blank', 'noopener');
  } else {
    toast(row.agent
      ? interpolate(gettext('%(name)s is serving this conversation.'), { name: row.agent.name }, true)
      : gettext('This conversation is not yours.'));
  }
}

/** Take a waiting conversation of a view (assign it to oneself) and open it when it comes. */
export async function takeRow(row) {
  try {
    const r = await api('POST', `/api/v1/kefu/queue/${row.session_id}/pick`);
    selectWhenHere(r.conversation_id);
  } catch (err) {
    toast(err.message);
  }
  emit('dirty');
}

/** The list entries in the order they are shown. */
export function shownEntries() {
  if (state.tab === 'customers' && state.viewRows) {
    return state.viewRows.map((row) => entryOf(row.conversation_id, row));
  }
  return [...state.convs.values()]
    .filter((c) => tabOf(c) === state.tab && (state.showArchived || !archivedAway(c) || c.id === state.selected))
    .sort((a, b) => {
      const pa = a.pinned ? 0 : 1;
      const pb = b.pinned ? 0 : 1;
      const ca = a.closed ? 1 : 0;
      const cb = b.closed ? 1 : 0;
      return pa - pb || ca - cb || lastAt(b) - lastAt(a) || b.id - a.id;
    })
    .map((c) => entryOf(c.id, null));
}

function renderList() {
  const shown = state.tab === 'tickets' ? [] : shownEntries();
  // Re-appending existing nodes only moves them, so focus and hover survive.
  shown.forEach((entry, i) => {
    const el = renderItem(entry);
    if (convList.children[i] !== el) convList.insertBefore(el, convList.children[i] || null);
  });
  const keep = new Set(shown.map((e) => e.id));
  for (const [id, el] of rows) {
    if (!keep.has(id)) {
      el.remove();
      rows.delete(id);
    }
  }
  const inView = state.tab === 'customers' && !!state.viewRows;
  $('conv-list-empty').hidden = inView || shown.length > 0 || !state.synced;
  $('view-list-empty').hidden = !inView || shown.length > 0;
  // Unread per tab; do-not-disturb conversations count only when they @mention us.
  const unread = { customers: 0, team: 0 };
  for (const c of state.convs.values()) {
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
on('list', renderList);

/** A conversation that just came: into the list, flashed if new; `true` when it is new. */
function arrived(c) {
  const isNew = !state.convs.has(c.id);
  state.arrivedAt.set(c.id, Date.now());
  putConversation(c);
  emit('list');
  if (isNew && rows.has(c.id)) flash(rows.get(c.id).querySelector('.conv-item'));
  return isNew;
}

function setTab(name) {
  if (state.tab === name) return;
  const leavingTickets = state.tab === 'tickets';
  state.tab = name;
  app.dataset.tab = name;
  for (const t of document.querySelectorAll('.tab')) t.setAttribute('aria-selected', String(t.dataset.tab === name));
  ticketsUi.setActive(name === 'tickets');
  if (name === 'tickets') {
    $('conversation').hidden = true;
    $('no-selection').hidden = !$('ticket-view').hidden;
  } else if (leavingTickets) {
    showConversationPane();
  }
  emit('list');
}

for (const t of document.querySelectorAll('.tab')) t.addEventListener('click', () => setTab(t.dataset.tab));
$('show-archived').addEventListener('change', (e) => {
  state.showArchived = e.target.checked;
  emit('list');
});
$('back').addEventListener('click', () => app.classList.remove('show-conv'));

// ---- selection ----------------------------------------------------------------------------
/** Open conversation `id` (already in the store) in the conversation pane. */
export function select(id) {
  const c = state.convs.get(id);
  if (!c) return;
  const switching = state.selected !== id;
  state.selected = id;
  if (tabOf(c) !== state.tab) setTab(tabOf(c));
  c.mentioned = false;
  if (switching) {
    state.readCounts.clear();
    state.mentionPicks.clear();
    state.groupMembers = null;
    emit('switch', id);
    history.replaceState(null, '', '#c' + id);
  }
  $('no-selection').hidden = true;
  $('conversation').hidden = false;
  app.classList.add('show-conv');
  emit('header');
  emit('side', switching);
  emit('typing');
  c.unread = 0;
  markSelectedRead(true);
  emit('list');
  if (switching) emit('switched', id);
}

/** Select `id` now if it is in the inbox, else as soon as it arrives (its frame is on the way). */
export function selectWhenHere(id) {
  if (state.convs.has(id)) select(id);
  else state.selectOnArrival = id;
}

/** Tell the server (and the list) that we read the selected conversation up to its newest message. */
export function markSelectedRead(force) {
  const c = selectedConversation();
  if (!c || document.visibilityState !== 'visible') return;
  const msgs = state.messages.get(state.selected);
  const top = Math.max(c.last_seq || 0, msgs && msgs.size ? Math.max(...msgs.keys()) : 0);
  if (top > 0 && (force || top > (c.read_seq || 0))) {
    client.updateRead(state.selected, { read_seq: top });
    c.read_seq = Math.max(c.read_seq || 0, top);
  }
  if (c.unread) {
    c.unread = 0;
    emit('list');
  }
}

document.addEventListener('visibilitychange', () => markSelectedRead(false));

/** A conversation left the inbox (removed, left, not found): off the list and off screen. */
export function dropConversation(id) {
  state.convs.delete(id);
  if (state.selected === id) {
    state.selected = null;
    $('conversation').hidden = true;
    $('no-selection').hidden = false;
    app.classList.remove('show-conv');
    emit('side', false);
  }
  emit('list');
}

/** Add or replace a conversation the server just gave us (REST answer) and redraw it. */
export function showConversation(c) {
  putConversation(c);
  emit('list');
  if (c.id === state.selected) emit('header');
}

/** Fetch one conversation again (after conversation.updated or a search hit elsewhere). */
const refreshing = new Map();
export function refreshConversation(id) {
  if (refreshing.has(id)) return refreshing.get(id);
  const p = api('GET', `/api/v1/im/conversations/${id}`)
    .then((c) => {
      putConversation(c);
      emit('list');
      if (id === state.selected) {
        emit('header');
        emit('side', true);
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

// ---- frames -------------------------------------------------------------------------------
let resyncTimer = null;
/** A frame about a conversation we have not heard of: its conversation.assigned was missed. */
export function resyncSoon() {
  if (!resyncTimer) resyncTimer = setTimeout(() => { resyncTimer = null; client.sync(); }, 500);
}

handle('conversation.added', (f) => arrived(f.conversation));

handle('conversation.updated', (f) => {
  if (state.convs.has(f.conversation_id)) refreshConversation(f.conversation_id);
  else resyncSoon();
});

handle('conversation.removed', (f) => {
  const c = state.convs.get(f.conversation_id);
  if (c && f.conversation_id === state.selected) {
    toast(f.reason === 'left'
      ? gettext('You left the group.')
      : interpolate(gettext('You were removed from %(name)s.'), { name: titleOf(c) }, true));
  }
  dropConversation(f.conversation_id);
});

handle('member.state', (f) => {
  const c = state.convs.get(f.conversation_id);
  if (!c) return;
  for (const k of ['role', 'pinned', 'notifications_off', 'archived', 'archived_at', 'muted_until']) {
    if (k in f) c[k] = f[k];
  }
  emit('list');
  if (f.conversation_id === state.selected) {
    emit('header');
    if (c.kind === 'group') emit('side', false);
  }
});

handle('conversation.assigned', (f) => {
  const c = f.conversation;
  const isNew = arrived(c);
  if (isNew && c.kind === 'visitor') announceAssignment(c, () => select(c.id));
  if (c.id === state.selectOnArrival) {
    state.selectOnArrival = null;
    select(c.id);
  }
  if (c.id === state.selected) {
    emit('header');
    emit('side', false);
    emit('receipts');
  }
});

handle('conversation.closed', (f) => {
  const c = state.convs.get(f.conversation_id);
  if (!c) return;
  c.closed = true;
  if (c.session) {
    c.session.status = 'closed';
    c.session.closed_at = f.closed_at;
  }
  state.typers.clear(f.conversation_id);
  if (f.conversation_id === state.selected) {
    emit('header');
    emit('side', false);
    emit('typing');
    emit('closed', f.conversation_id);
  }
  emit('list');
});

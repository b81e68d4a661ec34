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
const items = new Map(); // conversation id -> its .conv-item button

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
const span = (cls) => el('span', cls);

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
  el.classList.toggle('selected', c.id === state.selected);
  if (c.id === state.selected) el.setAttribute('aria-current', 'true');
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
  el.querySelector('.conv-preview').textContent = lm ? previewText({ ...lm, conversation_kind: c.kind }, state.me) : '';
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
  const shown = [...state.convs.values()]
    .filter((c) => tabOf(c) === state.tab && (state.showArchived || !archivedAway(c) || c.id === state.selected))
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
    if (!state.convs.has(id)) items.delete(id);
    if (!keep.has(id)) el.remove();
  }
  $('conv-list-empty').hidden = shown.length > 0 || !state.synced;
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
  if (isNew && items.has(c.id)) flash(items.get(c.id));
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

// The inbox's one store: the state every part of the screen renders from, and the changes it
// emits. Modules read `state`, change it through the functions here (or, for a field of a
// conversation, directly followed by `emit`), and redraw when a topic they listen to is emitted.
// They keep DOM caches (element per id) but never a second copy of the state.
//
// Topics (emitted synchronously; listeners run in the order their modules were loaded):
//   'list'              the conversation list and what is counted from it (tabs, title, load)
//   'switch' (id)       another conversation was selected: drop what belonged to the old one
//   'switched' (id)     ... and its panes are drawn: scroll, load history, focus
//   'header'            the selected conversation's details (title, state, settings, composer)
//   'side' (reload)     the side panel; `reload` fetches the group's members again
//   'typing'            who is typing in the selected conversation
//   'receipts'          delivery/read marks of the selected conversation's own messages
//   'message' (m)       a message of the selected conversation changed in place (recalled)
//   'incoming' (m)      a new message arrived in the selected conversation
//   'members'           the selected group's members were fetched (names for @mentions)
//   'closed' (id)       the selected conversation was closed
//   'resync'            a sync.result came (the socket was down: queues may have moved)
//   'connection' (s)    the websocket's state ('open', 'reconnecting', …)
//   'labels'            labels changed (the tenant's, or a conversation's: convLabels)
//   'view'              another view of the list was chosen (state.filters)
import { pageConfig } from '../weiyu/dom.js';
import { gettext } from '../weiyu/i18n.js';
import { Typers, keepMessage, mergePeerMarks } from '../weiyu/thread.js';

export const config = pageConfig();

export const state = {
  me: config.user.key, // own member key, "u:7" (the server's hello confirms it)
  selected: null, // id of the conversation on screen
  synced: false, // the first sync.result has arrived
  tab: 'customers', // 'customers' | 'team' | 'tickets'
  showArchived: false,
  agentStatus: null, // 'online' | 'busy' | 'offline' ...
  maxConcurrent: null,
  openCount: null, // open customer conversations (agent.status)
  accountDisabled: false, // an account.disabled frame came: the socket closes next
  selectOnArrival: null, // a conversation to open as soon as it arrives (taken, transferred)
  convs: new Map(), // id -> conversation (REST shape)
  arrivedAt: new Map(), // conversation id -> Date.now() when a live frame brought it
  messages: new Map(), // conversation id -> Map(seq -> message)
  peerMarks: new Map(), // conversation id -> {d, r}: furthest any other participant got
  names: new Map([[config.user.key, config.user.name]]), // member key -> name, for @mentions
  readCounts: new Map(), // seq -> {read, delivered}: the selected group's "read by N"
  mentionPicks: new Map(), // "@name" -> member key, chosen in the composer
  groupMembers: null, // the selected group's members, [{member, role, muted_until}]
  typers: new Typers((id) => id === state.selected && emit('typing')),
  // the list's views (views.js): 'mine' is the agent's own conversations, held above; any other
  // view's rows come from GET /api/v1/kefu/conversations and are redrawn on push events
  filters: { view: 'mine', workgroup: null, label: null, channel: null, sort: '' },
  savedView: null, // id of the saved view on screen, if any
  viewRows: null, // rows of the current server view (null: the 'mine' list)
  viewCounts: null, // GET /api/v1/kefu/views
  labels: [], // the tenant's labels [{id, name, color, description}]
  convLabels: new Map(), // conversation id -> [label]
  customerMsgs: new Map(), // conversation id -> the visitor's last message {content, msg_type, created_at}
  waitingSince: new Map(), // conversation id -> ISO time the customer's unanswered message came (null: none)
  checked: new Set(), // conversation ids ticked for a bulk change
};

// ---- changes ------------------------------------------------------------------------------
const listeners = new Map(); // topic -> [fn]

/** Call `fn(detail)` whenever `topic` is emitted. */
export function on(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, []);
  listeners.get(topic).push(fn);
}

/** Tell the listeners of `topic` that the state changed. */
export function emit(topic, detail) {
  for (const fn of listeners.get(topic) || []) fn(detail);
}

/** The conversation on screen, or undefined. */
export function selectedConversation() {
  return state.convs.get(state.selected);
}

/** Keep a message (from any frame or page); a recall blanks the message it recalls. */
export function ingest(m) {
  const msgs = keepMessage(state.messages, m);
  if (m.sender && m.sender.key) state.names.set(m.sender.key, m.sender.name);
  if (m.msg_type === 'recall' && m.ref_seq) {
    const original = msgs.get(m.ref_seq);
    if (original) {
      Object.assign(original, { recalled: true, content: '', attachment: null, mentions: [] });
      if (m.conversation_id === state.selected) emit('message', original);
    }
  }
  noteCustomerClock(m);
  const c = state.convs.get(m.conversation_id);
  if (c && m.seq >= (c.last_seq || 0)) {
    c.last_seq = m.seq;
    c.last_message = m;
    c.last_message_at = m.created_at;
  }
}

const USER_TYPES = new Set(['text', 'image', 'voice', 'video', 'file', 'sticker']);

/** The list preview's clock: a visitor's message is the customer's last words and starts their
 * wait (unless they already wait); an agent's public reply ends it (as the server counts it). */
function noteCustomerClock(m) {
  if (!m.sender || !USER_TYPES.has(m.msg_type || 'text')) return;
  const id = m.conversation_id;
  if (m.sender.type === 'visitor') {
    const known = state.customerMsgs.get(id);
    if (!known || (known.seq || 0) <= m.seq) {
      state.customerMsgs.set(id, { seq: m.seq, content: m.recalled ? '' : m.content, msg_type: m.msg_type, created_at: m.created_at });
    }
    if (!state.waitingSince.get(id)) state.waitingSince.set(id, m.created_at);
  } else if (m.sender.type === 'agent' && !m.internal) {
    const since = state.waitingSince.get(id);
    if (since && Date.parse(m.created_at) >= Date.parse(since)) state.waitingSince.set(id, null);
  }
}

/** Keep what a session payload or a view row tells about the list preview and labels. */
export function noteSession(conversationId, s) {
  if (!s) return;
  if (s.labels) state.convLabels.set(conversationId, s.labels);
  if (s.customer_message) {
    const known = state.customerMsgs.get(conversationId);
    if (!known || (known.seq || 0) <= (s.customer_message.seq || 0)) state.customerMsgs.set(conversationId, s.customer_message);
  }
  if ('waiting_since' in s) state.waitingSince.set(conversationId, s.status === 'closed' ? null : s.waiting_since);
}

export function setPeer(conversationId, delivered, read) {
  mergePeerMarks(state.peerMarks, conversationId, delivered, read);
}

/** Keep a conversation as the server sent it (REST shape), without losing newer messages. */
export function putConversation(c) {
  const old = state.convs.get(c.id);
  // A conversation object can be older than messages we already hold (sent before them).
  if (old && (old.last_seq || 0) > (c.last_seq || 0)) {
    c.last_seq = old.last_seq;
    c.last_message = old.last_message;
    c.last_message_at = old.last_message_at;
  }
  if (c.id === state.selected && document.visibilityState === 'visible') c.unread = 0;
  if (c.id === state.selected) c.mentioned = false;
  state.convs.set(c.id, c);
  if (c.session) noteSession(c.id, c.session);
  for (const peer of c.peers || []) {
    if (peer.member) state.names.set(peer.member.key, peer.member.name);
    if (peer.member && peer.member.key !== state.me) setPeer(c.id, peer.delivered_seq, peer.read_seq);
  }
}

// ---- reading the state --------------------------------------------------------------------
export const STATUS_TEXT = {
  robot: gettext('with the robot'),
  queued: gettext('queued'),
  open: gettext('open'),
  closed: gettext('closed'),
};

export function statusOf(c) {
  if (c.closed) return 'closed';
  return (c.session && c.session.status) || 'open';
}

export const tabOf = (c) => (c.kind === 'direct' || c.kind === 'group' ? 'team' : 'customers');
export const isStaff = (role) => role === 'owner' || role === 'admin';

export function titleOf(c) {
  if (c.kind === 'direct') {
    const p = (c.peers || []).find((x) => x.member && x.member.key !== state.me);
    return (p && p.member.name) || c.title || gettext('Chat');
  }
  return c.title || (c.session && c.session.visitor && c.session.visitor.name) || '#' + c.id;
}

export function lastAt(c) {
  return Date.parse(c.last_message_at || (c.last_message && c.last_message.created_at) ||
    (c.session && c.session.created_at) || 0) || 0;
}

// Archived conversations stay out of the list until a message newer than the archiving comes.
export function archivedAway(c) {
  return !!c.archived && !(c.archived_at && lastAt(c) > Date.parse(c.archived_at));
}

/** Whether we may not write in `c` now (closed, muted, or the whole group muted). */
export function mutedNow(c) {
  if (c.closed) return true;
  if (c.muted_until && Date.parse(c.muted_until) > Date.now()) return true;
  return !!(c.kind === 'group' && c.group && c.group.all_muted && !isStaff(c.role));
}

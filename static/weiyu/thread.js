// The message pane shared by the inbox and the widget: ordering message elements, scrolling,
// the contiguous history held, peers' read marks, the typing line and the connection line.
import { gettext, interpolate } from './i18n.js';

/**
 * Put `msgEl` among the `.msg` children of `list`, ordered by `key` (an array compared by `cmp`;
 * default: element by element). Elements without a place go right after `anchor` (the history
 * loader). Scans from the end because nearly every insert is an append.
 */
export function placeMsg(list, anchor, msgEl, key, cmp = compareKeys) {
  msgEl._key = key;
  const msgs = list.querySelectorAll(':scope > .msg');
  for (let i = msgs.length - 1; i >= 0; i--) {
    if (msgs[i] === msgEl) continue;
    if (cmp(msgs[i]._key, key) <= 0) {
      msgs[i].after(msgEl);
      return;
    }
  }
  anchor.after(msgEl);
}

/** Order of two keys, part by part (NaN, e.g. Infinity - Infinity, counts as equal). */
export function compareKeys(a, b) {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] || 0) - (b[i] || 0);
    if (d) return d;
  }
  return 0;
}

/** Whether the reader is at (or within 80 px of) the bottom of `list`. */
export function nearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

export function scrollToBottom(list) {
  list.scrollTop = list.scrollHeight;
}

/** Oldest seq of the unbroken run that ends at the newest message of `msgs` (Map seq -> m), or null. */
export function floorOf(msgs) {
  if (!msgs || !msgs.size) return null;
  let s = Math.max(...msgs.keys());
  while (msgs.has(s - 1)) s--;
  return s;
}

/** Raise the furthest delivered/read seq any other participant reached in a conversation. */
export function mergePeerMarks(marks, conversationId, delivered, read) {
  const p = marks.get(conversationId) || { d: 0, r: 0 };
  p.d = Math.max(p.d, delivered || 0, read || 0);
  p.r = Math.max(p.r, read || 0);
  marks.set(conversationId, p);
}

/**
 * Who is typing where, from `typing` frames. A lost typing.stop must not leave the line up
 * forever: an entry goes away by itself after 6 s. `onChange(conversationId)` after each change.
 */
export class Typers {
  constructor(onChange) {
    this.onChange = onChange;
    this.byConversation = new Map(); // conversation id -> Map(member key -> {name, timer})
  }

  /** A `typing` frame from someone else. */
  frame(f) {
    const conversationId = f.conversation_id;
    const key = f.member.key;
    this.stop(conversationId, key);
    if (f.state !== 'start') return;
    if (!this.byConversation.has(conversationId)) this.byConversation.set(conversationId, new Map());
    this.byConversation.get(conversationId).set(key, {
      name: f.member.name,
      timer: setTimeout(() => this.stop(conversationId, key), 6000),
    });
    this.onChange(conversationId);
  }

  stop(conversationId, key) {
    const t = this.byConversation.get(conversationId);
    const x = t && t.get(key);
    if (!x) return;
    clearTimeout(x.timer);
    t.delete(key);
    this.onChange(conversationId);
  }

  /** Forget a conversation's typers (it closed), or everyone's without an id. */
  clear(conversationId) {
    for (const [id, t] of this.byConversation) {
      if (conversationId != null && id !== conversationId) continue;
      for (const x of t.values()) clearTimeout(x.timer);
      this.byConversation.delete(id);
    }
  }

  /** The names typing in a conversation, or in any without an id. */
  names(conversationId) {
    const names = [];
    for (const [id, t] of this.byConversation) {
      if (conversationId == null || id === conversationId) for (const x of t.values()) names.push(x.name);
    }
    return names;
  }
}

/** "Ann is typing…" for the names typing ('' for nobody). */
export function typingText(names) {
  return names.length ? interpolate(gettext('%(name)s is typing…'), { name: names.join(', ') }, true) : '';
}

/** The connection line for a WeiyuClient state while it is not open ('' when open). */
export function connectionText(state) {
  if (state === 'connecting') return gettext('Connecting…');
  if (state === 'reconnecting' || state === 'offline') return gettext('Reconnecting…');
  return '';
}

/** Keep message `m` in `byConversation` (Map conversation id -> Map(seq -> m)); returns its conversation's map. */
export function keepMessage(byConversation, m) {
  let msgs = byConversation.get(m.conversation_id);
  if (!msgs) byConversation.set(m.conversation_id, (msgs = new Map()));
  msgs.set(m.seq, m);
  return msgs;
}

/**
 * A loader of older history for one pane: `load(conversationId, beforeSeq)` asks the client for
 * 50 messages before `beforeSeq` (null: the newest page), one request at a time, showing
 * `indicator` meanwhile. `getClient()` gives the WeiyuClient (or null); `onError(e, id)` and
 * `onDone()` are optional. The messages themselves arrive as a history.result frame.
 */
export function olderLoader({ indicator, getClient, onError = () => {}, onDone = () => {} }) {
  let loading = false;
  return function load(conversationId, beforeSeq) {
    const client = getClient();
    if (loading || !client || !client.connected) return;
    loading = true;
    indicator.hidden = false;
    client
      .fetchHistory(conversationId, beforeSeq, 50)
      .catch((e) => onError(e, conversationId))
      .finally(() => {
        loading = false;
        indicator.hidden = true;
        onDone();
      });
  };
}

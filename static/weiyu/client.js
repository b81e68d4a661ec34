// Weiyu reference websocket client (protocol v1, see docs/protocol.md).
// Shared by the visitor widget and the agent inbox. No dependencies, no build step.
//
// What it guarantees to the UI:
//  * frames arrive through onFrame(frame); message.new / sync.result / history.result never
//    carry a message the client already handed out (keyed by conversation_id + seq);
//  * messages given to send() are kept until their message.ack, and re-sent with the same
//    client_msg_id after every reconnect (the server turns repeats into duplicate acks);
//  * the socket comes back by itself (0.5s doubling to 10s, plus jitter), except after 4401.

const BACKOFF_MIN = 500;
const BACKOFF_MAX = 10000;
const PING_EVERY = 25000;
// Two missed pongs: the TCP connection is probably dead even if the browser has not noticed.
const DEAD_AFTER = PING_EVERY * 2 + 10000;
// Server promises an ack or an error for every send; this only covers frames lost in transit.
const RESEND_AFTER = 20000;
const REQUEST_TIMEOUT = 20000;
const TYPING_THROTTLE = 3000;
const TYPING_IDLE = 4000;
// Send errors after which repeating the same frame cannot succeed.
const RETRYABLE = new Set(['unavailable']);

export function newClientMsgId() {
  const c = globalThis.crypto;
  // randomUUID needs a secure context; getRandomValues does not (plain-http deployments).
  if (c && typeof c.randomUUID === 'function') return 'c-' + c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && c.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return 'c-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Wire a composer: Enter sends (Shift+Enter is a newline; Enter that confirms an IME candidate,
 * e.g. pinyin, does not send), submit sends, and every edit calls onInput (typing indicator).
 */
export function bindComposer({ form, textarea, send, onInput }) {
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
    textarea.focus();
  });
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  });
  textarea.addEventListener('input', onInput);
}

export class WeiyuClient {
  /**
   * @param {object} o
   * @param {string|function():string} o.url  websocket URL, or a function (re-read on each connect,
   *        so a refreshed token is picked up)
   * @param {function(object)} [o.onFrame]
   * @param {function(string)} [o.onState]  'connecting' | 'open' | 'reconnecting' | 'offline' |
   *        'unauthorized' | 'closed'
   * @param {boolean} [o.autoConnect=true]
   */
  constructor({ url, protocols = null, onFrame = () => {}, onState = () => {}, autoConnect = true }) {
    this.url = url;
    this.protocols = protocols; // subprotocols (or a function giving them), e.g. a credential
    this.onFrame = onFrame;
    this.onState = onState;
    this.state = 'closed';
    this.me = null; // member from hello
    this.ws = null;
    this._attempt = 0;
    this._retryTimer = null;
    this._pingTimer = null;
    this._lastRecv = 0;
    this._stopped = false;
    this._refN = 0;
    this._requests = new Map(); // ref -> {resolve, reject, timer}
    this._held = new Map(); // conversation id (string) -> Set(seq)
    // conversation id (string) -> highest seq held without a gap below it, counted from where this
    // client first learned of the conversation (what came before is history: history.fetch)
    this._cursors = new Map();
    this._synced = false; // a sync.result has arrived since this client was made
    this._outbox = new Map(); // client_msg_id -> pending item (insertion order = send order)
    this._receipts = new Map(); // conversation id -> {d, r, sentD, sentR}
    this._receiptTimer = null;
    this._typing = new Map(); // conversation id -> {last, timer}

    this._onOnline = () => this._reconnectNow();
    this._onOffline = () => {
      // The socket may linger in OPEN for minutes after the network went away.
      if (this.ws) this._drop(this.ws);
    };
    this._onVisible = () => {
      if (document.visibilityState === 'visible') this._reconnectNow();
    };
    window.addEventListener('online', this._onOnline);
    window.addEventListener('offline', this._onOffline);
    document.addEventListener('visibilitychange', this._onVisible);
    if (autoConnect) this.connect();
  }

  // ---- connection -------------------------------------------------------------------------

  connect() {
    this._stopped = false;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    this._setState(this._attempt ? 'reconnecting' : 'connecting');
    let ws;
    try {
      const protocols = typeof this.protocols === 'function' ? this.protocols() : this.protocols;
      const url = typeof this.url === 'function' ? this.url() : this.url;
      ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
    } catch (e) {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this._lastRecv = Date.now();
      this._setState('open');
      this.sync();
      this._flushOutbox();
      this._flushReceipts();
      clearInterval(this._pingTimer);
      this._pingTimer = setInterval(() => this._tick(), PING_EVERY);
    };
    ws.onmessage = (ev) => {
      if (this.ws === ws) this._receive(ev.data);
    };
    ws.onclose = (ev) => this._closed(ws, ev.code);
    ws.onerror = () => {}; // a close event always follows
  }

  /** Stop for good (no reconnect). */
  close() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    window.removeEventListener('online', this._onOnline);
    window.removeEventListener('offline', this._onOffline);
    document.removeEventListener('visibilitychange', this._onVisible);
    if (this.ws) {
      const ws = this.ws;
      this._closed(ws, 1000);
      try { ws.close(1000); } catch (e) { /* already closing */ }
    }
    this._setState('closed');
  }

  get connected() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  _reconnectNow() {
    if (this._stopped || this.state === 'unauthorized' || this.connected) return;
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING) return;
    this._attempt = Math.max(this._attempt, 1); // show "reconnecting", not "connecting"
    this.connect();
  }

  _drop(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(); } catch (e) { /* ignore */ }
    this._closed(ws, 1006);
  }

  _closed(ws, code) {
    if (this.ws !== ws) return;
    this.ws = null;
    clearInterval(this._pingTimer);
    for (const [ref, req] of this._requests) {
      clearTimeout(req.timer);
      req.reject(Object.assign(new Error('disconnected'), { code: 'disconnected', ref }));
    }
    this._requests.clear();
    for (const t of this._typing.values()) clearTimeout(t.timer);
    this._typing.clear();
    if (this._stopped) return;
    if (code === 4401) {
      this._setState('unauthorized');
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._stopped) return;
    const offline = navigator.onLine === false;
    // navigator.onLine can be wrong in both directions, so keep trying slowly even "offline";
    // the 'online' event short-cuts the wait.
    const base = offline ? BACKOFF_MAX : Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this._attempt);
    const delay = base + Math.random() * base * 0.3;
    this._attempt++;
    this._setState(offline ? 'offline' : 'reconnecting');
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this.connect(), delay);
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    try { this.onState(s); } catch (e) { console.error(e); }
  }

  _tick() {
    if (!this.connected) return;
    if (Date.now() - this._lastRecv > DEAD_AFTER) {
      this._drop(this.ws);
      return;
    }
    this._send({ type: 'ping' });
    const stale = Date.now() - RESEND_AFTER;
    for (const item of this._outbox.values()) {
      if (item.sentAt && item.sentAt < stale && !item.retryTimer) this._transmit(item);
    }
  }

  _send(frame) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Send a frame with a ref; resolves with the reply frame, rejects with the error frame.
   * meta.until(frame): also resolve on a matching frame without our ref (replies that are
   * broadcasts, like conversation.closed, need not echo it); such requests resolve with null on
   * timeout instead of failing, since their effect arrives as its own frame anyway.
   */
  request(frame, meta = {}) {
    if (!this.connected) {
      return Promise.reject(Object.assign(new Error('disconnected'), { code: 'disconnected' }));
    }
    const ref = 'r' + ++this._refN;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._requests.delete(ref);
        if (meta.until) resolve(null);
        else reject(Object.assign(new Error('timeout'), { code: 'timeout', ref }));
      }, REQUEST_TIMEOUT);
      this._requests.set(ref, { ...meta, resolve, reject, timer });
      this._send({ ...frame, ref });
    });
  }

  // ---- receiving --------------------------------------------------------------------------

  _receive(data) {
    this._lastRecv = Date.now();
    let f;
    try {
      f = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (!f || typeof f !== 'object' || typeof f.type !== 'string') return;

    switch (f.type) {
      case 'hello':
        this.me = f.member || null;
        break;
      case 'message.new':
        if (!f.message) return;
        this._learn(f.message.conversation_id, 0);
        if (!this._remember(f.message)) return; // already handed out
        this._advance(f.message.conversation_id);
        break;
      case 'conversation.added':
      case 'conversation.assigned':
        if (f.conversation) this._learn(f.conversation.id, 0);
        break;
      case 'sync.result': {
        f = this._syncPage(f);
        if (!f) return; // a page of a longer answer: the next page is asked for
        // Conversations this client did not send a cursor for. In the first sync of its life
        // they are what the user had before this page: history, paged in with history.fetch.
        // In a later one they came while it was away: the next sync brings all of them.
        let missed = false;
        for (const conv of f.conversations || []) {
          if (this._synced && !this._cursors.has(String(conv.id)) && conv.last_seq > 0) {
            missed = true;
          }
          this._learn(conv.id, this._synced ? 0 : conv.last_seq);
        }
        this._synced = true;
        if (missed) setTimeout(() => this.sync(), 0); // fetch what they hold, now
        const msgs = this._fresh(f.messages);
        // The server sent everything after our cursors (or, if truncated, the newest part):
        // either way nothing newer than its last message is missing.
        for (const m of f.messages || []) this._raise(m.conversation_id, m.seq);
        const req = f.ref != null && this._requests.get(f.ref);
        f = { ...f, messages: msgs, sent_at: req ? req.sentAt : undefined };
        this._attempt = 0; // only now is the connection proven useful
        break;
      }
      case 'history.result': {
        const all = f.messages || [];
        const msgs = this._fresh(all);
        // A page without before_seq is the newest page: the same reasoning as sync.result.
        const req = this._requests.get(f.ref);
        if (req && req.latest && all.length) {
          this._raise(f.conversation_id, all[all.length - 1].seq);
        }
        for (const m of all) this._advance(m.conversation_id);
        f = { ...f, messages: msgs };
        break;
      }
      case 'message.ack':
        this._acked(f);
        break;
      case 'error':
        f = this._failed(f);
        break;
      default:
    }

    try {
      this.onFrame(f);
    } catch (e) {
      console.error(e);
    }

    const req = f.ref != null && this._requests.get(f.ref);
    if (req) {
      this._requests.delete(f.ref);
      clearTimeout(req.timer);
      if (f.type === 'error') req.reject(Object.assign(new Error(f.message || f.code), f));
      else req.resolve(f);
    } else if (f.type !== 'error') {
      for (const [ref, r] of this._requests) {
        if (r.until && r.until(f)) {
          this._requests.delete(ref);
          clearTimeout(r.timer);
          r.resolve(f);
        }
      }
    }
  }

  _remember(m) {
    const c = String(m.conversation_id);
    let set = this._held.get(c);
    if (!set) this._held.set(c, (set = new Set()));
    if (set.has(m.seq)) return false;
    set.add(m.seq);
    return true;
  }

  _fresh(list) {
    return (list || []).filter((m) => this._remember(m));
  }

  // The first time this client hears of a conversation, its cursor starts at `seq`: 0 for one
  // that appeared while the page was open (assigned, added, a first live message), so the next
  // sync brings every message of it this client missed, older ones included; the conversation's
  // last seq for those listed by the page's first sync (history until opened). Before, a
  // conversation whose first messages this client never held kept cursor 0 and was left out of
  // every sync, so what it missed while reconnecting never came.
  _learn(conversationId, seq) {
    const c = String(conversationId);
    if (this._cursors.has(c) || typeof seq !== 'number' || seq < 0) return;
    this._cursors.set(c, seq);
    this._advance(c);
  }

  _raise(conversationId, seq) {
    const c = String(conversationId);
    if ((this._cursors.get(c) || 0) < seq) this._cursors.set(c, seq);
    this._advance(c);
  }

  // Cursors only move over contiguous seqs, so a message.new that overtook a gap (seen while
  // sync.result is in flight) never makes the next sync skip the missing ones.
  _advance(conversationId) {
    const c = String(conversationId);
    const set = this._held.get(c);
    if (!set) return;
    let cur = this._cursors.get(c) || 0;
    while (set.has(cur + 1)) cur++;
    this._cursors.set(c, cur);
  }

  /** True if the message (conversation_id, seq) was already handed to onFrame. */
  has(conversationId, seq) {
    const set = this._held.get(String(conversationId));
    return !!set && set.has(seq);
  }

  /** Highest seq held for a conversation with nothing missing below it down to our oldest. */
  cursor(conversationId) {
    return this._cursors.get(String(conversationId)) || 0;
  }

  // ---- requests ---------------------------------------------------------------------------

  sync() {
    // every conversation this client knows, 0 included (docs/protocol.md §3)
    const cursors = {};
    for (const [c, seq] of this._cursors) cursors[c] = seq;
    // sentAt: a sync.result describes the server as it was after this moment; frames that came
    // live in between (a conversation.added) are newer than it (sync.result carries sent_at)
    const pages = { cursors, conversations: [], messages: [], truncated: [] };
    return this.request({ type: 'sync', cursors }, { sentAt: Date.now(), pages }).catch(() => null);
  }

  // A sync.result with `next` is one page of the answer (docs/protocol.md §2.2): keep it, ask
  // for the next page with the same cursors, and hand the UI one sync.result once the last page
  // came. Nothing of a page is remembered before then, so a socket lost between pages leaves
  // the cursors as they were and the next sync asks again. Returns the whole answer, or null.
  _syncPage(f) {
    const req = f.ref != null ? this._requests.get(f.ref) : null;
    const pages = req && req.pages;
    if (!pages) return f; // not ours (or a server without pages)
    pages.conversations.push(...(f.conversations || []));
    pages.messages.push(...(f.messages || []));
    pages.truncated.push(...(f.truncated || []));
    if (f.next == null) {
      return { ...f, conversations: pages.conversations, messages: pages.messages, truncated: pages.truncated };
    }
    this._requests.delete(f.ref);
    clearTimeout(req.timer);
    const frame = { type: 'sync', cursors: pages.cursors, page: f.next };
    this.request(frame, { sentAt: req.sentAt, pages }).then(req.resolve, req.reject);
    return null;
  }

  /** history.fetch; beforeSeq null/undefined = the newest page. Resolves with history.result. */
  fetchHistory(conversationId, beforeSeq, limit = 50) {
    const frame = { type: 'history.fetch', conversation_id: conversationId, limit };
    if (beforeSeq != null) frame.before_seq = beforeSeq;
    return this.request(frame, { latest: beforeSeq == null });
  }

  /** read.update; values only move forward, are coalesced, and survive a reconnect. */
  updateRead(conversationId, { delivered_seq, read_seq } = {}) {
    const c = String(conversationId);
    let r = this._receipts.get(c);
    if (!r) this._receipts.set(c, (r = { d: 0, r: 0, sentD: 0, sentR: 0 }));
    if (read_seq > r.r) r.r = read_seq;
    if (delivered_seq > r.d) r.d = delivered_seq;
    if (r.r > r.d) r.d = r.r; // what was read was received
    if (!this._receiptTimer) this._receiptTimer = setTimeout(() => this._flushReceipts(), 150);
  }

  _flushReceipts() {
    clearTimeout(this._receiptTimer);
    this._receiptTimer = null;
    if (!this.connected) return;
    for (const [c, r] of this._receipts) {
      if (r.d <= r.sentD && r.r <= r.sentR) continue;
      const frame = { type: 'read.update', conversation_id: Number(c) };
      if (r.d > r.sentD) frame.delivered_seq = r.d;
      if (r.r > r.sentR) frame.read_seq = r.r;
      if (this._send(frame)) {
        r.sentD = r.d;
        r.sentR = r.r;
      }
    }
  }

  /** Call on every keystroke; sends typing.start at most every 3s and typing.stop after 4s idle. */
  typing(conversationId) {
    if (conversationId == null || !this.connected) return;
    const c = String(conversationId);
    let t = this._typing.get(c);
    if (!t) this._typing.set(c, (t = { last: 0, timer: null }));
    const now = Date.now();
    if (now - t.last >= TYPING_THROTTLE) {
      t.last = now;
      this._send({ type: 'typing.start', conversation_id: conversationId });
    }
    clearTimeout(t.timer);
    t.timer = setTimeout(() => this.stopTyping(conversationId), TYPING_IDLE);
  }

  stopTyping(conversationId) {
    const t = this._typing.get(String(conversationId));
    if (!t) return;
    clearTimeout(t.timer);
    this._typing.delete(String(conversationId));
    if (t.last) this._send({ type: 'typing.stop', conversation_id: conversationId });
  }

  /** Resolves with the conversation.closed frame; rejects with an error frame. */
  closeConversation(conversationId) {
    return this.request(
      { type: 'conversation.close', conversation_id: conversationId },
      { until: (f) => f.type === 'conversation.closed' && f.conversation_id === conversationId },
    );
  }

  /** Resolves with the agent.status frame; rejects with an error frame. */
  setAgentStatus(status) {
    return this.request(
      { type: 'agent.status', status },
      { until: (f) => f.type === 'agent.status' && f.status === status },
    );
  }

  // ---- outbox -----------------------------------------------------------------------------

  /**
   * Queue a text message. conversationId null = (visitors) the next new conversation.
   * Returns the pending item {client_msg_id, conversation_id, content, created_at}.
   */
  /**
   * Queue a message; `extra` adds message.send fields (msg_type, attachment_id, sticker_id,
   * mentions, internal — docs/protocol.md §2.2).
   */
  send(conversationId, content, extra = {}) {
    const item = {
      client_msg_id: newClientMsgId(),
      conversation_id: conversationId == null ? null : conversationId,
      content,
      extra,
      created_at: new Date().toISOString(),
      sentAt: 0,
      tries: 0,
      retryTimer: null,
    };
    this._outbox.set(item.client_msg_id, item);
    if (item.conversation_id != null) this.stopTyping(item.conversation_id);
    this._transmit(item);
    return item;
  }

  /** Pending (unacknowledged) items, oldest first. */
  /** Recall one of our messages; resolves with the message.ack of the recall. */
  recall(conversationId, messageId) {
    return this.request({
      type: 'message.recall',
      conversation_id: conversationId,
      message_id: messageId,
      client_msg_id: newClientMsgId(),
    });
  }

  /** "Read by N": resolves with receipts.result for up to 200 seqs. */
  fetchReceipts(conversationId, seqs) {
    return this.request({ type: 'receipts.fetch', conversation_id: conversationId, seqs });
  }

  pending() {
    return Array.from(this._outbox.values());
  }

  _flushOutbox() {
    for (const item of this._outbox.values()) {
      clearTimeout(item.retryTimer);
      item.retryTimer = null;
      this._transmit(item);
    }
  }

  // Several messages sent without a conversation before the first is acked must not open
  // several conversations: only the first goes out, the rest wait for its conversation_id.
  _blockedByNewConversation(item) {
    if (item.conversation_id != null) return false;
    for (const other of this._outbox.values()) {
      if (other.conversation_id == null) return other !== item;
    }
    return false;
  }

  _transmit(item) {
    if (!this.connected || this._blockedByNewConversation(item)) return;
    const frame = {
      type: 'message.send',
      ref: item.client_msg_id,
      client_msg_id: item.client_msg_id,
      content: item.content,
      msg_type: 'text',
      ...(item.extra || {}),
    };
    if (item.conversation_id != null) frame.conversation_id = item.conversation_id;
    if (this._send(frame)) {
      item.sentAt = Date.now();
      item.tries++;
    }
  }

  _acked(f) {
    const item = this._outbox.get(f.client_msg_id);
    if (!item) return;
    clearTimeout(item.retryTimer);
    this._outbox.delete(f.client_msg_id);
    if (item.conversation_id == null) {
      for (const other of this._outbox.values()) {
        if (other.conversation_id == null) other.conversation_id = f.conversation_id;
      }
      this._flushWaiting();
    }
  }

  _flushWaiting() {
    for (const other of this._outbox.values()) if (!other.sentAt) this._transmit(other);
  }

  // Returns the frame, with `failed` = the dropped outbox item when a send can never succeed.
  _failed(f) {
    const id = f.client_msg_id || (f.ref && this._outbox.has(f.ref) ? f.ref : null);
    const item = id && this._outbox.get(id);
    if (!item) return f;
    if (RETRYABLE.has(f.code)) {
      // Nothing was stored: same client_msg_id again, later.
      clearTimeout(item.retryTimer);
      const delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** item.tries) * (1 + Math.random() * 0.3);
      item.retryTimer = setTimeout(() => {
        item.retryTimer = null;
        this._transmit(item);
      }, delay);
      return { ...f, client_msg_id: id, retrying: item };
    }
    this._outbox.delete(id);
    if (item.conversation_id == null) this._flushWaiting();
    return { ...f, client_msg_id: id, failed: item };
  }
}

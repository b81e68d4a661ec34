// The visitor chat, running inside the widget iframe on the tenant's domain.
import { api, formatSize, kindForFile, upload } from '../weiyu/api.js';
import { WeiyuClient, bindComposer } from '../weiyu/client.js';
import { $, pageConfig } from '../weiyu/dom.js';
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
  Typers,
  connectionText,
  floorOf,
  keepMessage,
  mergePeerMarks,
  nearBottom as nearBottomOf,
  olderLoader,
  placeMsg,
  scrollToBottom as scrollToBottomOf,
  typingText,
} from '../weiyu/thread.js';
import { lineText } from '../weiyu/syslines.js';
import { setupTickets } from './tickets.js';

const config = pageConfig();
const TOKEN_KEY = 'weiyu.token.' + config.channel;
const list = $('messages');
const composer = $('composer');
const sendBtn = $('send');
const connStatus = $('conn-status');
const queueBanner = $('queue-banner');
const typingLine = $('typing');
const emptyNote = $('empty');
const loader = $('history-loader');

const HEX_COLOR = /^#[0-9a-f]{3}([0-9a-f]{3})?$/i;
if (HEX_COLOR.test(config.color || '')) document.documentElement.style.setProperty('--accent', config.color);
// the tenant's brand accent (tenants.branding): links in the widget
if (HEX_COLOR.test(config.accent_color || '')) document.documentElement.style.setProperty('--link', config.accent_color);


// ---- host page (parent window) ------------------------------------------------------------
const embedded = window.parent !== window;
let hostOpen = !embedded; // opened directly in a tab: always "open"
const hostOrigin = (() => {
  try {
    return new URL(config.page_url).origin;
  } catch (e) {
    return '*'; // only unread counts and "close" go out; nothing private
  }
})();

function toHost(msg) {
  if (!embedded) return;
  try {
    window.parent.postMessage({ source: 'weiyu', ...msg }, hostOrigin);
  } catch (e) {
    window.parent.postMessage({ source: 'weiyu', ...msg }, '*');
  }
}

window.addEventListener('message', (e) => {
  if (e.source !== window.parent || !e.data || e.data.source !== 'weiyu-host') return;
  if (e.data.event === 'token') {
    // the host page's copy of the token (see loadToken), from the page the loader named only
    if (hostTokenReply && e.origin === hostOrigin) {
      hostTokenReply(typeof e.data.token === 'string' && e.data.token.length <= 512 ? e.data.token : null);
    }
    return;
  }
  if (e.data.event === 'identify') {
    identity = { identity: e.data.identity, hmac: e.data.hmac };
    if (client) identify();
    return;
  }
  if (e.data.event === 'locale') {
    // Weiyu.setLocale on the host page: as if the visitor chose it in the language menu
    const wanted = typeof e.data.language === 'string' ? e.data.language : '';
    const offered = [...languageSwitch.options].map((o) => o.value);
    const match =
      offered.find((v) => v && v.toLowerCase() === wanted.toLowerCase()) ||
      offered.find((v) => v && v.split('-')[0] === wanted.toLowerCase().split('-')[0]) ||
      '';
    // already in that language (the reload below came back, or storage is blocked): no reload
    const settled = match ? match === document.documentElement.lang : !chosenLanguage();
    languageSwitch.value = match;
    if (!settled) languageSwitch.dispatchEvent(new Event('change'));
    return;
  }
  if (e.data.event === 'visibility') {
    hostOpen = !!e.data.open;
    if (hostOpen && window.matchMedia('(pointer: fine)').matches) composer.focus();
    markRead();
  }
});

if (embedded) {
  $('close-widget').hidden = false;
  $('close-widget').addEventListener('click', () => toHost({ event: 'close' }));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') toHost({ event: 'close' });
  });
}

// ---- state --------------------------------------------------------------------------------
let client = null;
let me = null; // own member key, "v:12"
let synced = false;
let current = null; // conversation new messages go to; null = the next send starts one
let lastUnread = -1;
let tie = 0;
const convs = new Map(); // id -> conversation
const store = new Map(); // id -> Map(seq -> message); everything received, shown or not
const shown = new Set(); // conversation ids rendered in the list
const elBySeq = new Map(); // "conv:seq" -> element
const pendingEls = new Map(); // client_msg_id -> element
const peerMarks = new Map(); // conv -> {d, r}: furthest any other participant got
const myRead = new Map(); // conv -> read_seq
const notices = new Map(); // local system lines shown ("ended:9", "…") -> element or null
const closedAt = new Map(); // conv -> ms timestamp of its end
const typers = new Typers(renderTyping); // who is typing in the conversations shown

function conv(id) {
  return convs.get(id) || null;
}

function latestShown() {
  return shown.size ? Math.max(...shown) : null;
}

// ---- rendering ----------------------------------------------------------------------------
function kindOf(m) {
  return kindOfMsg(m, me);
}

function receiptState(conversationId, seq) {
  return receiptOf(peerMarks.get(conversationId), seq);
}

// Messages sort by (conversation, seq); pending ones go last.
const place = (el, key) => placeMsg(list, loader, el, key);
const nearBottom = () => nearBottomOf(list);
const scrollToBottom = () => scrollToBottomOf(list);

function showMessage(m) {
  const key = m.conversation_id + ':' + m.seq;
  const kind = kindOf(m);
  let el = elBySeq.get(key);
  if (!el && kind === 'mine' && m.client_msg_id && pendingEls.has(m.client_msg_id)) {
    el = pendingEls.get(m.client_msg_id);
    pendingEls.delete(m.client_msg_id);
  }
  if (!el) el = buildMsg(kind, m.conversation_id);
  el.dataset.conversation = m.conversation_id;
  el.dataset.seq = m.seq;
  fill(el, {
    content: lineText(m),
    created_at: m.created_at,
    name: kind === 'mine' ? gettext('You') : (m.sender && m.sender.name) || '',
  });
  if (MEDIA_TYPES.has(m.msg_type)) fillBody(el, forWidget(m), { me, nameOf: () => '' });
  if (kind === 'mine') setState(el, receiptState(m.conversation_id, m.seq));
  if (m.sender && m.sender.type === 'robot') renderRobot(el, m);
  elBySeq.set(key, el);
  place(el, [m.conversation_id, m.seq, 0]);
  seen.observe(el);
  if (kind !== 'mine' && m.sender) typers.stop(m.conversation_id, m.sender.key);
  if (kind === 'system' && isClosingMessage(m)) {
    // The server's own "conversation ended" line arrived after ours: keep just the server's.
    const local = notices.get('ended:' + m.conversation_id);
    if (local) local.remove();
    notices.set('ended:' + m.conversation_id, null);
    el.classList.add('ended');
  }
}

// ---- files ------------------------------------------------------------------------------
const MEDIA_TYPES = new Set(['image', 'voice', 'video', 'file']);

// Files are fetched with a short-lived files token (`ft`, from the session and every hello), not
// the visitor's year-long token: an <img src> cannot send a header, and URLs end up in logs.
let filesToken = '';
function widgetFileUrl(attachment, thumb) {
  const params = new URLSearchParams();
  if (thumb) params.set('thumb', '1');
  params.set('ft', filesToken);
  return `${config.files_url}/${attachment.id}?${params}`;
}

/** The message with its attachment's URLs pointing at the widget's download endpoint. */
function forWidget(m) {
  const a = m.attachment;
  if (!a) return m;
  return {
    ...m,
    attachment: { ...a, url: widgetFileUrl(a, false), thumbnail_url: a.thumbnail_url ? widgetFileUrl(a, true) : null },
  };
}

// ---- robot ------------------------------------------------------------------------------
const robotBar = $('robot-bar');
const streams = new Map(); // stream_id -> element of an answer still being written
const handedOver = new Set(); // conversations that left the robot

function robotMeta(m) {
  return (m.meta && m.meta.robot) || null;
}

// Sources and "helpful / not helpful" under a robot answer; the offline offer under its notice.
function renderRobot(el, m) {
  el.classList.add('robot');
  el.dataset.id = m.id;
  const meta = robotMeta(m);
  for (const old of el.querySelectorAll('.robot-extra')) old.remove();
  if (!meta) return;
  if (m.client_msg_id && streams.has(m.client_msg_id)) {
    streams.get(m.client_msg_id).remove();
    streams.delete(m.client_msg_id);
  }
  if (meta.offline) {
    $('offline-banner').hidden = false;
    return;
  }
  const extra = document.createElement('div');
  extra.className = 'robot-extra';
  if (meta.sources && meta.sources.length) {
    const src = document.createElement('div');
    src.className = 'robot-sources';
    src.append(gettext('Source:') + ' ');
    meta.sources.forEach((s, i) => {
      if (i) src.append(', ');
      const item = document.createElement(s.url ? 'a' : 'span');
      if (s.url) {
        item.href = s.url;
        item.target = '_blank';
        item.rel = 'noopener';
      }
      item.className = 'robot-source';
      item.textContent = s.title;
      src.append(item);
    });
    extra.append(src);
  }
  if (meta.suggestions && meta.suggestions.length) {
    // "Did you mean": a choice sends its question, which the robot then answers
    const choices = document.createElement('div');
    choices.className = 'robot-suggestions';
    for (const s of meta.suggestions) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'suggestion-btn';
      b.textContent = s.title;
      b.addEventListener('click', () => {
        if (!client || current !== m.conversation_id || !robotServing()) return;
        sendText(s.title);
      });
      choices.append(b);
    }
    extra.append(choices);
  }
  if (meta.answered) {
    const rate = document.createElement('div');
    rate.className = 'robot-rate';
    for (const [helpful, label] of [
      [true, gettext('Helpful')],
      [false, gettext('Not helpful')],
    ]) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'rate-btn';
      b.dataset.helpful = helpful;
      b.textContent = label;
      b.setAttribute('aria-pressed', String(meta.feedback === (helpful ? 'helpful' : 'not_helpful')));
      b.addEventListener('click', () => rateAnswer(m, helpful));
      rate.append(b);
    }
    extra.append(rate);
  }
  if (extra.childNodes.length) el.append(extra);
}

function rateAnswer(m, helpful) {
  if (!client) return;
  client.request({ type: 'robot.feedback', message_id: m.id, helpful }).then(
    (f) => f && applyFeedback(m.conversation_id, f.message_id, f.feedback),
    () => {},
  );
}

function applyFeedback(conversationId, messageId, feedback) {
  for (const m of (store.get(conversationId) || new Map()).values()) {
    const meta = m.id === messageId ? robotMeta(m) : null;
    if (!meta) continue;
    meta.feedback = feedback;
    const el = elBySeq.get(conversationId + ':' + m.seq);
    if (el) renderRobot(el, m);
  }
}

function onStream(f) {
  if (!shown.has(f.conversation_id) && !adopt(f.conversation_id)) return;
  let el = streams.get(f.stream_id);
  if (!el) {
    el = buildMsg('theirs', f.conversation_id);
    el.classList.add('robot', 'streaming');
    streams.set(f.stream_id, el);
    place(el, [f.conversation_id, Infinity, ++tie]);
  }
  const stick = nearBottom();
  fill(el, { content: f.text, created_at: new Date().toISOString(), name: (session && session.robot && session.robot.name) || '' });
  if (stick) scrollToBottom();
}

// Whether the robot serves the conversation the visitor writes to (or the next one).
function robotServing() {
  if (!session || !session.robot) return false;
  if (current == null) return true;
  if (handedOver.has(current)) return false;
  const c = conv(current);
  return !(c && c.session && c.session.status && c.session.status !== 'robot');
}

function updateRobotBar() {
  updateDepartments();
  updateTranscriptBar();
  robotBar.hidden = !(session && session.robot && session.robot.handover && current != null && robotServing());
}

$('talk-to-person').addEventListener('click', () => {
  if (!client || current == null) return;
  const conversationId = current;
  client.request({ type: 'robot.handover', conversation_id: conversationId }).then(
    (f) => {
      if (f && f.result !== 'offline') handedOver.add(conversationId);
      updateRobotBar();
    },
    () => {},
  );
});

// A system message written when the conversation ended (servers usually log the close).
function isClosingMessage(m) {
  const at = closedAt.get(m.conversation_id);
  return at != null && kindOf(m) === 'system' && Date.parse(m.created_at) >= at - 1000;
}

function showNotice(id, conversationId, text, cls = '') {
  if (notices.has(id)) return;
  const el = buildMsg('system', conversationId);
  notices.set(id, el);
  el.classList.add('local');
  if (cls) el.classList.add(cls);
  fill(el, { content: text, created_at: new Date().toISOString() });
  const msgs = store.get(conversationId);
  const after = cls === 'ended' ? 1e12 : (msgs && msgs.size ? Math.max(...msgs.keys()) : 0) + 0.5;
  const stick = nearBottom();
  place(el, [conversationId, after, ++tie]);
  if (stick) scrollToBottom();
}

function showEnded(conversationId) {
  if (notices.has('ended:' + conversationId)) return;
  const msgs = store.get(conversationId);
  const last = msgs && msgs.size ? msgs.get(Math.max(...msgs.keys())) : null;
  const lastEl = last && elBySeq.get(conversationId + ':' + last.seq);
  if (lastEl && isClosingMessage(last)) {
    lastEl.classList.add('ended');
    notices.set('ended:' + conversationId, null);
    return;
  }
  showNotice('ended:' + conversationId, conversationId, gettext('The conversation has ended'), 'ended');
}

// ---- satisfaction survey (when a conversation has ended) ----------------------------------
const rated = new Map(); // conversation id -> score

function showCsat(conversationId) {
  const c = conv(conversationId);
  const survey = c && c.session && c.session.csat;
  if (!survey || notices.has('csat:' + conversationId)) return;
  const score = rated.get(conversationId) || survey.score;
  const el = document.createElement('div');
  el.className = 'msg system csat';
  el.dataset.conversation = conversationId;
  notices.set('csat:' + conversationId, el);
  const stick = nearBottom();
  place(el, [conversationId, 2e12, ++tie]);
  renderCsat(el, conversationId, score);
  if (stick) scrollToBottom();
}

function renderCsat(el, conversationId, score) {
  el.replaceChildren();
  const box = document.createElement('div');
  box.className = 'csat-box';
  if (score) {
    box.textContent = interpolate(gettext('Thank you for your rating: %(stars)s'), { stars: '★'.repeat(score) }, true);
    el.append(box);
    return;
  }
  const title = document.createElement('p');
  title.textContent = gettext('How was this conversation?');
  const stars = document.createElement('div');
  stars.className = 'csat-stars';
  stars.setAttribute('role', 'radiogroup');
  let chosen = 0;
  const buttons = [];
  for (let n = 1; n <= 5; n++) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'csat-star';
    b.dataset.score = n;
    b.textContent = '★';
    b.setAttribute('role', 'radio');
    b.setAttribute('aria-checked', 'false');
    b.setAttribute('aria-label', interpolate(gettext('%(n)s of 5 stars'), { n }, true));
    b.addEventListener('click', () => {
      chosen = n;
      buttons.forEach((x, i) => {
        x.classList.toggle('on', i < n);
        x.setAttribute('aria-checked', String(i + 1 === n));
      });
      send.disabled = false;
    });
    buttons.push(b);
    stars.append(b);
  }
  const comment = document.createElement('textarea');
  comment.className = 'csat-comment';
  comment.maxLength = 1000;
  comment.rows = 2;
  comment.placeholder = gettext('Anything to add? (optional)');
  comment.setAttribute('aria-label', gettext('Comment'));
  const send = document.createElement('button');
  send.type = 'button';
  send.className = 'primary-btn csat-send';
  send.textContent = gettext('Send rating');
  send.disabled = true;
  const error = document.createElement('p');
  error.className = 'form-error';
  send.addEventListener('click', () => {
    if (!client || !chosen) return;
    send.disabled = true;
    client
      .request({ type: 'csat.submit', conversation_id: conversationId, score: chosen, comment: comment.value.trim() })
      .then((f) => {
        rated.set(conversationId, f.score);
        renderCsat(el, conversationId, f.score);
      })
      .catch((e) => {
        error.textContent = e.message || gettext('Could not send. Try again.');
        send.disabled = false;
      });
  });
  box.append(title, stars, comment, send, error);
  el.append(box);
}

function updateEmpty() {
  emptyNote.hidden = !!list.querySelector('.msg') || !synced;
}

function refreshStates(conversationId) {
  for (const el of list.querySelectorAll('.msg.mine[data-seq]')) {
    if (Number(el.dataset.conversation) === conversationId && el.dataset.state !== 'failed') {
      setState(el, receiptState(conversationId, Number(el.dataset.seq)));
    }
  }
}

function ingest(m) {
  keepMessage(store, m);
}

function display(conversationId) {
  if (shown.has(conversationId)) return;
  shown.add(conversationId);
  for (const m of (store.get(conversationId) || new Map()).values()) showMessage(m);
  const c = conv(conversationId);
  if (c && c.closed) {
    showEnded(conversationId);
    showCsat(conversationId);
  }
}

// A conversation newer than anything on screen (started from another tab, or just now by us)
// joins the list and becomes the one we write to.
function adopt(conversationId) {
  const latest = latestShown();
  if (latest != null && conversationId < latest) return false;
  display(conversationId);
  const c = conv(conversationId);
  if (!(c && c.closed)) current = conversationId;
  return true;
}

function setPeer(conversationId, delivered, read) {
  mergePeerMarks(peerMarks, conversationId, delivered, read);
}

function updateConversation(c) {
  convs.set(c.id, c);
  if (c.closed && c.session && c.session.closed_at) closedAt.set(c.id, Date.parse(c.session.closed_at));
  for (const peer of c.peers || []) {
    if (peer.member && peer.member.key !== me) setPeer(c.id, peer.delivered_seq, peer.read_seq);
  }
  if (c.read_seq > (myRead.get(c.id) || 0)) myRead.set(c.id, c.read_seq);
}

// ---- queue banner, typing -----------------------------------------------------------------
// Whether an agent is available (online with an inbox open): from the session, then from each
// queue.position. While waiting, the visitor reads either their place in the queue or that
// nobody is available (with the offer to leave a message) — never both.
let agentsOnline = true;

function updateQueue(position) {
  if (position != null && current != null) handedOver.add(current);
  updateRobotBar();
  const c = current != null ? conv(current) : null;
  const queued = c && !c.closed && c.session && c.session.status === 'queued';
  const waiting = queued || (position != null && current != null);
  if (waiting && !agentsOnline) {
    queueBanner.hidden = true;
    $('offline-banner').hidden = false;
    return;
  }
  if (waiting) $('offline-banner').hidden = true;
  else if (c && !c.closed && c.session && c.session.status === 'open') $('offline-banner').hidden = true;
  if (position != null && current != null) {
    queueBanner.textContent = interpolate(gettext('You are number %(position)s in the queue'), { position }, true);
    queueBanner.hidden = false;
  } else if (queued) {
    if (queueBanner.hidden) queueBanner.textContent = gettext('Waiting for an agent…');
    queueBanner.hidden = false;
  } else {
    queueBanner.hidden = true;
  }
}

function renderTyping() {
  typingLine.textContent = typingText(typers.names());
}

// ---- receipts and unread ------------------------------------------------------------------
const visible = new Set();
const seen = new IntersectionObserver(
  (entries) => {
    for (const e of entries) {
      if (e.isIntersecting) visible.add(e.target);
      else visible.delete(e.target);
    }
    markRead();
  },
  { root: list, threshold: 0 },
);

function markRead() {
  if (client && hostOpen && document.visibilityState === 'visible') {
    const top = new Map();
    for (const el of visible) {
      if (!el.isConnected || !el.dataset.seq) continue;
      const c = Number(el.dataset.conversation);
      top.set(c, Math.max(top.get(c) || 0, Number(el.dataset.seq)));
    }
    for (const [c, seq] of top) {
      if (seq > (myRead.get(c) || 0)) {
        myRead.set(c, seq);
        client.updateRead(c, { read_seq: seq });
      }
    }
  }
  reportUnread();
}

function reportUnread() {
  let n = 0;
  for (const c of shown) {
    const read = myRead.get(c) || 0;
    for (const m of (store.get(c) || new Map()).values()) {
      if (m.seq > read && kindOf(m) === 'theirs') n++;
    }
  }
  if (n === lastUnread) return;
  lastUnread = n;
  toHost({ event: 'unread', count: n });
}

document.addEventListener('visibilitychange', markRead);
window.addEventListener('focus', markRead);

// ---- frames -------------------------------------------------------------------------------
function onFrame(f) {
  switch (f.type) {
    case 'hello':
      if (f.member) me = f.member.key;
      if (f.files_token) filesToken = f.files_token;
      break;

    case 'sync.result': {
      renewals = 0; // the token works (a rejected socket is also "open" for a moment)
      for (const c of f.conversations || []) updateConversation(c);
      const top = new Map();
      for (const m of f.messages) {
        ingest(m);
        if (m.meta && m.meta.handover) handedOver.add(m.conversation_id);
        top.set(m.conversation_id, Math.max(top.get(m.conversation_id) || 0, m.seq));
      }
      for (const [c, seq] of top) client.updateRead(c, { delivered_seq: seq });
      const stick = !synced || nearBottom();
      if (!synced) {
        synced = true;
        // Only the most recent conversation is shown; older ones stay in the store.
        const ids = [...convs.keys()];
        if (ids.length) adopt(Math.max(...ids));
        for (const c of shown) {
          if (!store.get(c) && (conv(c).last_seq || 0) > 0) loadOlder(c, null);
        }
      } else {
        for (const m of f.messages) if (shown.has(m.conversation_id)) showMessage(m);
        const ids = [...convs.keys()];
        if (ids.length) adopt(Math.max(...ids));
        for (const c of shown) {
          if (conv(c) && conv(c).closed) {
            showEnded(c);
            showCsat(c);
          }
        }
        if (current != null && conv(current) && conv(current).closed) current = null;
      }
      for (const c of shown) refreshStates(c);
      updateQueue();
      updateEmpty();
      if (stick) scrollToBottom();
      maybeLoadOlder();
      markRead();
      break;
    }

    case 'history.result': {
      const before = list.scrollHeight - list.scrollTop;
      for (const m of f.messages) {
        ingest(m);
        if (shown.has(m.conversation_id)) showMessage(m);
      }
      list.scrollTop = list.scrollHeight - before; // keep what the reader was looking at
      updateEmpty();
      markRead();
      break;
    }

    case 'message.new': {
      const m = f.message;
      ingest(m);
      if (m.meta && m.meta.handover) handedOver.add(m.conversation_id);
      if (m.meta && m.meta.leave_message) $('offline-banner').hidden = false;
      const kind = kindOf(m);
      if (kind !== 'mine') client.updateRead(m.conversation_id, { delivered_seq: m.seq });
      if (kind === 'theirs' && !m.recalled) {
        // Weiyu.on('message') on the host page: an agent's or the robot's new message
        toHost({
          event: 'message',
          message: {
            conversation_id: m.conversation_id,
            sender_name: m.sender ? m.sender.name : '',
            sender_type: m.sender ? m.sender.type : '',
            type: m.msg_type,
            text: m.msg_type === 'text' ? m.content : '',
            created_at: m.created_at,
          },
        });
      }
      const stick = nearBottom() || kind === 'mine';
      if (shown.has(m.conversation_id) || adopt(m.conversation_id)) showMessage(m);
      if (stick) scrollToBottom();
      updateEmpty();
      markRead();
      break;
    }

    case 'message.ack': {
      adopt(f.conversation_id);
      updateRobotBar();
      const el = pendingEls.get(f.client_msg_id) || elBySeq.get(f.conversation_id + ':' + f.seq);
      if (!el) break;
      pendingEls.delete(f.client_msg_id);
      if (!el.dataset.seq) {
        el.dataset.conversation = f.conversation_id;
        el.dataset.seq = f.seq;
        elBySeq.set(f.conversation_id + ':' + f.seq, el);
        setTime(el, f.created_at);
        place(el, [f.conversation_id, f.seq, 0]);
        seen.observe(el);
      }
      setState(el, receiptState(f.conversation_id, f.seq));
      break;
    }

    case 'read.state': {
      if (!f.member) break;
      if (f.member.key === me) {
        // Read in another tab of this visitor.
        if (f.read_seq > (myRead.get(f.conversation_id) || 0)) myRead.set(f.conversation_id, f.read_seq);
        reportUnread();
      } else {
        setPeer(f.conversation_id, f.delivered_seq, f.read_seq);
        refreshStates(f.conversation_id);
      }
      break;
    }

    case 'typing': {
      if (!f.member || f.member.key === me || !shown.has(f.conversation_id)) break;
      typers.frame(f);
      break;
    }

    case 'queue.position':
      if (f.conversation_id === current || adopt(f.conversation_id)) {
        if (typeof f.agents_online === 'boolean') agentsOnline = f.agents_online;
        updateQueue(f.position);
      }
      break;

    case 'conversation.assigned': {
      const c = f.conversation;
      updateConversation(c);
      if (!shown.has(c.id) && !adopt(c.id)) break;
      // the server posts its own "… is now serving you" system line into the conversation
      updateQueue();
      refreshStates(c.id);
      break;
    }

    case 'conversation.closed': {
      const c = conv(f.conversation_id);
      if (c) {
        c.closed = true;
        if (c.session) c.session.status = 'closed';
      }
      closedAt.set(f.conversation_id, Date.parse(f.closed_at) || Date.now());
      if (current === f.conversation_id) current = null;
      if (shown.has(f.conversation_id)) {
        showEnded(f.conversation_id);
        showCsat(f.conversation_id);
      }
      typers.clear();
      renderTyping();
      updateQueue();
      break;
    }

    case 'ticket.updated':
      tickets.onEvent(f);
      break;

    case 'robot.stream':
      onStream(f);
      break;

    case 'robot.feedback':
      applyFeedback(f.conversation_id, f.message_id, f.feedback);
      break;

    case 'error':
      onError(f);
      break;
    default:
  }
}

function onError(f) {
  const item = f.failed;
  if (!item) {
    if (f.code === 'not_found' && f.conversation_id != null && current === f.conversation_id) current = null;
    return;
  }
  const el = pendingEls.get(item.client_msg_id);
  pendingEls.delete(item.client_msg_id);
  if (f.code === 'conversation_closed' || (f.code === 'not_found' && item.conversation_id != null)) {
    // The conversation ended while this was on its way: it opens a new one instead.
    if (current === item.conversation_id) current = null;
    const c = conv(item.conversation_id);
    if (c) c.closed = true;
    if (!closedAt.has(item.conversation_id)) closedAt.set(item.conversation_id, Date.now());
    if (shown.has(item.conversation_id)) showEnded(item.conversation_id);
    const again = client.send(current, item.content, item.extra);
    if (el) {
      pendingEls.set(again.client_msg_id, el);
      place(el, [Infinity, Infinity, ++tie]);
    }
    return;
  }
  if (f.code === 'queue_full' || f.code === 'closed' || f.code === 'quota_exceeded') {
    // every agent is busy and the queue is full, or the company's plan takes no more chats this
    // month: the text becomes a message left for the team
    $('offline-banner').hidden = false;
    if (el) el.remove();
    tickets.show(true, { leave: true });
    const body = $('leave-body');
    if (!body.value) body.value = item.content || '';
    return;
  }
  if (f.code === 'rate_limited' && f.retry_after) {
    // sending too fast: the message was not stored; say how long to wait
    const wait = interpolate(gettext('try again in %(s)s s'), { s: f.retry_after }, true);
    f = { ...f, message: `${f.message} (${wait})` };
  }
  if (el) {
    setState(el, 'failed');
    el.title = f.message || '';
    // say why where the visitor looks (e.g. a refused word), not only in a tooltip
    if (f.message) el.querySelector('.msg-state').textContent = `${gettext('not sent')} · ${f.message}`;
  }
}

// ---- older history ------------------------------------------------------------------------

const loadOlder = olderLoader({ indicator: loader, getClient: () => client });

function maybeLoadOlder() {
  if (list.scrollTop > 40 || !shown.size) return;
  const oldest = Math.min(...shown);
  const floor = floorOf(store.get(oldest));
  if (floor != null && floor > 1) loadOlder(oldest, floor);
}

list.addEventListener('scroll', maybeLoadOlder, { passive: true });

// ---- composer -----------------------------------------------------------------------------
// ---- department choice (channels that offer several) --------------------------------------
const departmentBar = $('department-bar');
const departmentSelect = $('department');

function updateDepartments() {
  const choices = (session && session.departments) || [];
  const choosing = choices.length > 0 && current == null;
  departmentBar.hidden = !choosing;
  if (!choices.length || departmentSelect.options.length - 1 === choices.length) return;
  for (const d of choices) {
    const opt = document.createElement('option');
    opt.value = d.id;
    opt.textContent = d.name;
    departmentSelect.append(opt);
  }
}

function autosize() {
  composer.style.height = 'auto';
  composer.style.height = Math.min(composer.scrollHeight, 140) + 'px';
}

// Send pressed before the chat session exists (a slow first load): the text stays in the box
// and goes as soon as the session starts.
let sendWhenReady = false;

function sendNow() {
  const content = composer.value.trim();
  if (!content) return;
  if (!client) {
    sendWhenReady = true;
    return;
  }
  sendWhenReady = false;
  sendText(content);
  composer.value = '';
  autosize();
}

// Send a text to the current conversation (or start one), shown at once as pending.
function sendText(content) {
  const extra = {};
  if (current == null && departmentSelect.value) extra.workgroup_id = Number(departmentSelect.value);
  const item = client.send(current, content, extra);
  const el = buildMsg('mine', current);
  fill(el, { content, created_at: item.created_at, name: gettext('You') });
  setState(el, 'pending');
  pendingEls.set(item.client_msg_id, el);
  place(el, [current == null ? Infinity : current, Infinity, ++tie]);
  updateEmpty();
  scrollToBottom();
}

bindComposer({
  form: $('composer-form'),
  textarea: composer,
  send: sendNow,
  onInput: () => {
    autosize();
    if (client && current != null && composer.value.trim()) client.typing(current);
  },
});

// ---- attachments: button, paste, drag and drop --------------------------------------------
const uploadError = $('upload-error');
const fileInput = $('file-input');

function showUploadError(text) {
  uploadError.textContent = text || '';
  uploadError.hidden = !text;
}

function uploadFailure(file, err) {
  if (err.status === 429 && err.retryAfter) {
    const minutes = Math.max(1, Math.ceil(err.retryAfter / 60));
    return interpolate(gettext('%(message)s Try again in %(n)s min.'), { message: err.message, n: minutes }, true);
  }
  return interpolate(gettext('%(name)s was not sent: %(message)s'), { name: file.name, message: err.message }, true);
}

// One file: checked here for size (the server checks again, and the type by content), shown as
// a pending bubble with its progress, uploaded with the visitor's token, then sent.
async function sendFile(file) {
  if (!client || !session) {
    showUploadError(gettext('The chat is still connecting. Try again in a moment.'));
    return;
  }
  const kind = kindForFile(file);
  const limit = kind === 'image' ? config.max_image_bytes : config.max_file_bytes;
  if (limit && file.size > limit) {
    showUploadError(interpolate(gettext('%(name)s is larger than %(size)s.'), { name: file.name, size: formatSize(limit) }, true));
    return;
  }
  if (!file.size) {
    showUploadError(interpolate(gettext('%(name)s is empty.'), { name: file.name }, true));
    return;
  }
  showUploadError('');
  const el = buildMsg('mine', current);
  el.classList.add('uploading');
  fill(el, { content: file.name, created_at: new Date().toISOString(), name: gettext('You') });
  const progress = document.createElement('progress');
  progress.className = 'upload-progress';
  progress.max = 1;
  progress.value = 0;
  progress.setAttribute('aria-label', interpolate(gettext('Uploading %(name)s'), { name: file.name }, true));
  el.querySelector('.msg-bubble').append(progress);
  setState(el, 'pending');
  place(el, [current == null ? Infinity : current, Infinity, ++tie]);
  updateEmpty();
  scrollToBottom();
  // the message goes where the file went: a file uploaded before the first message is sent
  // without a conversation and joins the one its message opens (or the live one)
  const target = current;
  let attachment;
  try {
    attachment = await upload(file, {
      kind,
      conversationId: target,
      url: config.files_url,
      fields: { token: session.token },
      onProgress: (p) => {
        progress.value = p;
      },
    });
  } catch (err) {
    progress.remove();
    el.classList.remove('uploading');
    setState(el, 'failed');
    const text = uploadFailure(file, err);
    el.querySelector('.msg-state').textContent = `${gettext('not sent')} · ${err.message}`;
    showUploadError(text);
    return;
  }
  progress.remove();
  el.classList.remove('uploading');
  const extra = { msg_type: attachment.kind, attachment_id: attachment.id };
  if (target == null && departmentSelect.value) extra.workgroup_id = Number(departmentSelect.value);
  const item = client.send(target, '', extra);
  fillBody(el, forWidget({ msg_type: attachment.kind, attachment, content: '' }), { me, nameOf: () => '' });
  pendingEls.set(item.client_msg_id, el);
}

async function sendFiles(files) {
  for (const file of Array.from(files || [])) await sendFile(file);
}

$('attach-btn').addEventListener('click', () => fileInput.click());
fileInput.addEventListener('change', () => {
  const files = Array.from(fileInput.files || []);
  fileInput.value = '';
  sendFiles(files);
});

composer.addEventListener('paste', (e) => {
  const files = e.clipboardData && e.clipboardData.files;
  if (!files || !files.length) return;
  e.preventDefault();
  sendFiles(files);
});

const chatBox = $('chat');
const dropHint = $('drop-hint');
let dragDepth = 0;
const carriesFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');

chatBox.addEventListener('dragenter', (e) => {
  if (!carriesFiles(e)) return;
  e.preventDefault();
  dragDepth++;
  dropHint.hidden = false;
});
chatBox.addEventListener('dragover', (e) => {
  if (!carriesFiles(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = 'copy';
});
chatBox.addEventListener('dragleave', () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropHint.hidden = true;
});
chatBox.addEventListener('drop', (e) => {
  if (!carriesFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  dropHint.hidden = true;
  sendFiles(e.dataTransfer.files);
});

// ---- emoji --------------------------------------------------------------------------------
const EMOJI = [
  '😀', '😁', '😂', '😊', '😍', '😘', '😉', '😎', '🤔', '😅', '😢', '😭', '😡', '😮', '😴', '🙄',
  '👍', '👎', '👌', '👏', '🙏', '💪', '🤝', '👋', '❤️', '💔', '🎉', '🔥', '⭐', '✅', '❌', '❓',
  '📦', '🚚', '💰', '🧾', '📷', '📎', '⏰', '☕',
];
const emojiPanel = $('emoji-panel');
const emojiBtn = $('emoji-btn');

function setEmojiOpen(open) {
  emojiPanel.hidden = !open;
  emojiBtn.setAttribute('aria-expanded', String(open));
}

for (const symbol of EMOJI) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = symbol;
  b.addEventListener('click', () => {
    const start = composer.selectionStart ?? composer.value.length;
    const end = composer.selectionEnd ?? composer.value.length;
    composer.setRangeText(symbol, start, end, 'end');
    composer.dispatchEvent(new Event('input'));
    setEmojiOpen(false);
    composer.focus();
  });
  emojiPanel.append(b);
}
emojiBtn.addEventListener('click', () => setEmojiOpen(emojiPanel.hidden));
emojiPanel.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') {
    e.stopPropagation();
    setEmojiOpen(false);
    emojiBtn.focus();
  }
});

// ---- connection status --------------------------------------------------------------------
function showConn(state, text) {
  connStatus.dataset.state = state;
  connStatus.textContent = text || '';
  connStatus.hidden = !text;
}

let renewals = 0;

function onState(state) {
  if (state === 'open' || state === 'connecting' || state === 'reconnecting' || state === 'offline') {
    showConn(state, connectionText(state));
  } else if (state === 'unauthorized') {
    showConn(state, gettext('Reconnecting…'));
    setTimeout(renewSession, 0);
  }
}

// ---- session ------------------------------------------------------------------------------
// The token is kept in this frame's storage. A browser that blocks a third-party frame's
// storage (Safari, Chrome with third-party cookies blocked) would make every page load a new
// visitor: then the host page keeps it in its own (first-party) storage, through the loader
// (widget.js), which hands it back to the next frame on request (docs/protocol.md §1).
let storageBlocked = false;
const HOST_TOKEN_WAIT_MS = 3000; // a host page with an older loader never answers
let hostTokenReply = null; // resolves the pending request with the host's token

function ownToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch (e) {
    storageBlocked = true; // third-party iframe in a strict browser
    return null;
  }
}

function hostToken() {
  // Only to and from the page the loader named (page_url); never to any other origin.
  if (!embedded || hostOrigin === '*') return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), HOST_TOKEN_WAIT_MS);
    hostTokenReply = (token) => {
      clearTimeout(timer);
      hostTokenReply = null;
      resolve(token);
    };
    window.parent.postMessage({ source: 'weiyu', event: 'token.request' }, hostOrigin);
  });
}

async function loadToken() {
  const token = ownToken();
  if (token || !storageBlocked) return token;
  return hostToken();
}

function saveToken(token) {
  try {
    localStorage.setItem(TOKEN_KEY, token);
    return;
  } catch (e) {
    storageBlocked = true;
  }
  if (embedded && hostOrigin !== '*') {
    window.parent.postMessage({ source: 'weiyu', event: 'token', token }, hostOrigin);
  }
}

const clip = (s, n) => String(s || '').slice(0, n);

async function requestSession() {
  const body = {
    channel: config.channel,
    page_url: clip(config.page_url, 2000),
    page_title: clip(config.page_title, 200),
    referrer: clip(config.referrer, 2000),
    language: clip(config.language || navigator.language, 16),
    // shown to agents who schedule a reply at the visitor's local time
    timezone: clip(Intl.DateTimeFormat().resolvedOptions().timeZone, 64),
  };
  const token = await loadToken();
  if (token) body.token = token;
  const data = await api('POST', config.session_url, body);
  saveToken(data.token);
  return data;
}

let session = null;

const tickets = setupTickets({
  url: config.tickets_url,
  getToken: () => (session ? session.token : null),
  getFilesToken: () => filesToken,
  onOpen: (open) => $('chat').classList.toggle('show-tickets', open),
});

// ---- pre-chat form ------------------------------------------------------------------------
function showPrechat() {
  const fields = (session && session.prechat) || [];
  const needed = fields.length > 0 && !(session.visitor && session.visitor.profile_done);
  $('prechat-form').hidden = !needed;
  $('composer-form').hidden = needed;
  for (const label of $('prechat-form').querySelectorAll('label[data-field]')) {
    label.hidden = !fields.includes(label.dataset.field);
    label.querySelector('input').required = !label.hidden;
  }
  if (session && session.visitor && session.visitor.email && !$('prechat-email').value) {
    $('prechat-email').value = session.visitor.email;
  }
}

function widgetPost(url, body) {
  return api('POST', url, { token: session.token, ...body });
}

$('prechat-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('prechat-error').textContent = '';
  try {
    const data = await widgetPost(config.profile_url, {
      name: $('prechat-name').value.trim(),
      email: $('prechat-email').value.trim(),
      phone: $('prechat-phone').value.trim(),
    });
    session.visitor = data.visitor;
    showPrechat();
    composer.focus();
  } catch (err) {
    $('prechat-error').textContent = err.message;
  }
});

// ---- transcript by e-mail -----------------------------------------------------------------
function transcriptTarget() {
  return current != null ? current : latestShown();
}

function updateTranscriptBar() {
  $('transcript-bar').hidden = transcriptTarget() == null;
}

$('transcript-btn').addEventListener('click', () => {
  const form = $('transcript-form');
  form.hidden = !form.hidden;
  if (!form.hidden) {
    $('transcript-email').value = $('transcript-email').value || (session && session.visitor && session.visitor.email) || '';
    $('transcript-email').focus();
  }
});

$('transcript-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const conversationId = transcriptTarget();
  if (conversationId == null) return;
  try {
    const data = await widgetPost(config.transcript_url, { conversation_id: conversationId, email: $('transcript-email').value.trim() });
    $('transcript-form').hidden = true;
    $('transcript-status').textContent = interpolate(gettext('Sent to %(email)s.'), { email: data.email }, true);
  } catch (err) {
    $('transcript-status').textContent = err.message;
  }
});

function applySession(data) {
  session = data;
  if (data.files_token) filesToken = data.files_token;
  showPrechat();
  // Nobody to answer now: offer to leave a message (it becomes a ticket).
  // (the robot answers at any hour; it offers this itself when a hand-over finds nobody)
  $('offline-banner').hidden = data.agents_online !== false || !!data.robot;
  agentsOnline = data.agents_online !== false;
  if (data.open === false && data.opens_at) {
    const at = new Date(data.opens_at);
    $('offline-text').textContent = interpolate(gettext('We are closed now. We open again %(when)s.'), { when: at.toLocaleString([], { weekday: 'short', hour: '2-digit', minute: '2-digit' }) }, true);
  }
  tickets.refresh();
  me = data.visitor.key;
  const ch = data.channel || {};
  $('chat-title').textContent = ch.title || ch.name || $('chat-title').textContent;
  document.title = ch.title || ch.name || document.title;
  const welcome = $('chat-welcome');
  welcome.textContent = ch.welcome_text || '';
  welcome.hidden = !ch.welcome_text;
  // on a robot channel, the robot's greeting stands where the first messages will be
  if (data.robot && data.robot.greeting) emptyNote.textContent = data.robot.greeting;
  updateRobotBar();
  if (typeof ch.color === 'string' && HEX_COLOR.test(ch.color)) {
    document.documentElement.style.setProperty('--accent', ch.color);
  }
  toHost({ event: 'ready', color: ch.color });
}

function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const path = (session && session.ws_path) || config.ws_path;
  return scheme + location.host + path;
}

// The token travels as a subprotocol, never in the URL (access logs keep URLs): base64url of it.
function socketProtocols() {
  const bytes = new TextEncoder().encode(session.token);
  const b64 = btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return ['weiyu', 'weiyu.token.' + b64];
}

function resetConversationState() {
  synced = false;
  current = null;
  for (const m of [convs, store, elBySeq, pendingEls, peerMarks, myRead, typers, closedAt, streams]) m.clear();
  handedOver.clear();
  shown.clear();
  notices.clear();
  visible.clear();
  seen.disconnect();
  for (const el of list.querySelectorAll('.msg')) el.remove();
  renderTyping();
  updateQueue();
}

// The token stopped working (expired, revoked): ask for a new one. If that gives a different
// visitor, nothing on screen belongs to it any more.
async function renewSession() {
  if (++renewals > 3) {
    showConn('error', gettext('Your chat session has expired. Please reload the page.'));
    return;
  }
  try {
    const data = await requestSession();
    const sameVisitor = data.visitor.key === me;
    applySession(data);
    if (!sameVisitor) {
      client.close();
      resetConversationState();
      client = makeClient();
    } else {
      client.connect();
    }
  } catch (e) {
    setTimeout(renewSession, 2000 * renewals);
  }
}

// ---- known customers (Weiyu.identify on the host page; docs/protocol.md) ---------------------
// The identity is sent once the session exists; the answer is the contact this browser now is
// (with a valid HMAC: the customer's one contact, with their history from other browsers).
let identity = null;
let identifiedAs = null;

async function identify() {
  if (!identity || !session) return;
  const asked = JSON.stringify(identity);
  if (asked === identifiedAs) return;
  identifiedAs = asked;
  const shown = $('identity-error');
  try {
    const data = await api('POST', config.identify_url, {
      token: session.token,
      identity: identity.identity,
      hmac: identity.hmac,
    });
    shown.hidden = true;
    saveToken(data.token);
    const sameVisitor = data.visitor.key === me;
    applySession(data);
    if (!sameVisitor) {
      client.close();
      resetConversationState();
      client = makeClient();
    }
    toHost({ event: 'identified' });
  } catch (err) {
    shown.textContent = err.message;
    shown.hidden = false;
    toHost({ event: 'identify_failed', message: err.message });
  }
}

function makeClient() {
  return new WeiyuClient({ url: socketUrl, protocols: socketProtocols, onFrame, onState });
}

// ---- language ------------------------------------------------------------------------------
// The visitor's choice (the switch in the header) is kept in this frame's storage; "" is auto
// (the browser's). The page, its catalogue and the visitor's language on the server come from
// the frame URL's `lang`, so a choice that differs from it reloads the frame with it.
const LANG_KEY = 'weiyu.lang';
const languageSwitch = $('language-switch');

function chosenLanguage() {
  let chosen = '';
  try {
    chosen = localStorage.getItem(LANG_KEY) || '';
  } catch (e) {
    return '';
  }
  // only a language this page offers (anything else would reload for ever)
  return [...languageSwitch.options].some((o) => o.value === chosen) ? chosen : '';
}

function reloadIn(language) {
  const url = new URL(window.location.href);
  url.searchParams.set('lang', language || navigator.language || '');
  window.location.replace(url.href);
}

languageSwitch.value = chosenLanguage();
languageSwitch.addEventListener('change', () => {
  try {
    if (languageSwitch.value) localStorage.setItem(LANG_KEY, languageSwitch.value);
    else localStorage.removeItem(LANG_KEY);
  } catch (e) {
    /* storage blocked: the choice holds for this page only */
  }
  reloadIn(languageSwitch.value);
});

/** Whether the frame must reload in the visitor's chosen language before it starts. */
function followChosenLanguage() {
  const chosen = chosenLanguage();
  if (!chosen || chosen === document.documentElement.lang) return false;
  reloadIn(chosen);
  return true;
}

async function start(attempt = 0) {
  showConn('connecting', gettext('Connecting…'));
  try {
    applySession(await requestSession());
  } catch (e) {
    if (e.status === 404) {
      showConn('error', gettext('This chat is not available.'));
      composer.disabled = sendBtn.disabled = $('attach-btn').disabled = $('emoji-btn').disabled = true;
      return;
    }
    if (e.status === 400) {
      showConn('error', gettext('The chat could not be started.'));
      return;
    }
    if (e.status === 403) {
      showConn('error', gettext('You cannot chat here.'));
      composer.disabled = sendBtn.disabled = $('attach-btn').disabled = $('emoji-btn').disabled = true;
      return;
    }
    if (e.status === 429) {
      // too many new chats from here (or the site is flooded): say so, try again when allowed
      showConn('error', e.message);
      setTimeout(() => start(attempt + 1), 1000 * (e.retryAfter || 60));
      return;
    }
    showConn('error', gettext('Cannot reach the server. Retrying…'));
    setTimeout(() => start(attempt + 1), Math.min(30000, 1000 * 2 ** attempt));
    return;
  }
  client = makeClient();
  if (sendWhenReady) sendNow();
  identify();
}

if (!followChosenLanguage()) start();

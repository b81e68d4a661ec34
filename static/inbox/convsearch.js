// Conversation search (KF-13): find customer conversations by the customer's name, e-mail,
// phone or message text, with filters, in a dialog; a result opens the conversation at the
// matching message, highlighted. API: GET /api/v1/kefu/search (docs/api.md §15).
import { api } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { fullTime, shortTime } from '../weiyu/time.js';
import { refreshConversation, select } from './conversations.js';
import { jumpTo } from './search.js';
import { state, STATUS_TEXT } from './store.js';

const dialog = $('conv-search-dialog');
const form = $('cs-form');
const input = $('cs-q');
const results = $('cs-results');
const summary = $('cs-summary');
const errorBox = $('cs-error');
const more = $('cs-more');
const selects = {
  agent: $('cs-agent'),
  workgroup: $('cs-workgroup'),
  channel: $('cs-channel'),
  label: $('cs-label'),
};
let choicesLoaded = false;
let ticket = 0;
let lastParams = null;
let lastQuery = '';
let lastId = null;

/** The query's words and CJK runs, lower-cased, longest first (what gets a <mark>). */
function marksOf(q) {
  const words = q.toLowerCase().match(/[0-9a-z\u00c0-\u024f@._+-]+|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+/g) || [];
  return [...new Set(words)].sort((a, b) => b.length - a.length);
}

/** `text` as text nodes and <mark> elements around each occurrence of the query's words. */
function marked(text, q) {
  const words = marksOf(q);
  const out = document.createDocumentFragment();
  const lower = text.toLowerCase();
  let at = 0;
  while (at < text.length) {
    let best = -1;
    let len = 0;
    for (const w of words) {
      const i = lower.indexOf(w, at);
      if (i >= 0 && (best < 0 || i < best)) {
        best = i;
        len = w.length;
      }
    }
    if (best < 0) break;
    if (best > at) out.append(text.slice(at, best));
    out.append(el('mark', '', text.slice(best, best + len)));
    at = best + len;
  }
  if (at < text.length) out.append(text.slice(at));
  return out;
}

async function loadChoices() {
  if (choicesLoaded) return;
  try {
    const data = await api('GET', '/api/v1/kefu/search/filters');
    const lists = [
      ['agent', data.agents],
      ['workgroup', data.workgroups],
      ['channel', data.channels],
      ['label', data.labels || []],
    ];
    for (const [key, list] of lists) {
      for (const item of list) {
        const option = el('option', '', item.name);
        option.value = String(item.id);
        selects[key].append(option);
      }
    }
    choicesLoaded = true;
  } catch (e) {
    errorBox.textContent = e.message;
  }
}

function params() {
  const p = new URLSearchParams();
  const q = input.value.trim();
  if (q) p.set('q', q);
  for (const [name, id] of [['start', 'cs-start'], ['end', 'cs-end'], ['status', 'cs-status']]) {
    if ($(id).value) p.set(name, $(id).value);
  }
  for (const [name, select] of Object.entries(selects)) {
    if (select.value) p.set(name, select.value);
  }
  const csat = $('cs-csat').value;
  if (csat) {
    const [low, high] = csat.split('-');
    p.set('csat_min', low);
    p.set('csat_max', high);
  }
  p.set('limit', '20');
  return p;
}

function resultItem(r, q) {
  const li = el('li');
  const b = el('button', 'cs-hit');
  b.type = 'button';
  b.dataset.conversationId = String(r.conversation_id);
  const who = el('span', 'cs-who');
  who.append(marked(r.visitor.name || '#' + r.visitor.id, q));
  const contact = [r.visitor.email, r.visitor.phone].filter(Boolean).join(' · ');
  if (contact) {
    const small = el('span', 'cs-contact');
    small.append(marked(contact, q));
    who.append(' ', small);
  }
  const when = el('time', 'cs-when', shortTime(r.created_at));
  when.title = fullTime(r.created_at);
  const meta = el('span', 'cs-meta', [
    STATUS_TEXT[r.status] || r.status,
    r.agent ? r.agent.name : gettext('unassigned'),
    r.workgroup.name,
    r.channel.name,
    r.csat ? '★'.repeat(r.csat) : '',
  ].filter(Boolean).join(' · '));
  b.append(who, when, meta);
  if (r.message) {
    const text = el('span', 'cs-text');
    text.append(`${r.message.sender_name}: `, marked(r.message.highlight, q));
    b.append(text);
  }
  b.addEventListener('click', () => openResult(r));
  li.append(b);
  return li;
}

async function openResult(r) {
  dialog.close();
  if (r.message) {
    await jumpTo(r.conversation_id, r.message.seq);
    return;
  }
  if (!state.convs.has(r.conversation_id) && !(await refreshConversation(r.conversation_id))) return;
  select(r.conversation_id);
}

async function run(append) {
  const mine = ++ticket;
  const p = append ? new URLSearchParams(lastParams) : params();
  if (append) p.set('before_id', String(lastId));
  errorBox.textContent = '';
  if (!append) summary.textContent = gettext('Searching…');
  let data;
  try {
    data = await api('GET', '/api/v1/kefu/search?' + p);
  } catch (e) {
    if (mine === ticket) {
      errorBox.textContent = e.message;
      summary.textContent = '';
    }
    return;
  }
  if (mine !== ticket) return;
  if (!append) {
    lastParams = p;
    lastQuery = p.get('q') || '';
    results.replaceChildren();
  }
  for (const r of data.results) results.append(resultItem(r, lastQuery));
  if (data.results.length) lastId = data.results[data.results.length - 1].session_id;
  const n = results.children.length;
  summary.textContent = n
    ? interpolate(gettext('Conversations found: %(n)s'), { n: data.has_more ? n + '+' : n }, true)
    : gettext('No conversations match.');
  more.hidden = !data.has_more;
}

$('conv-search-open').addEventListener('click', () => {
  dialog.showModal();
  input.focus();
  loadChoices();
});
$('cs-close').addEventListener('click', () => dialog.close());
form.addEventListener('submit', (e) => {
  e.preventDefault();
  run(false);
});
more.addEventListener('click', () => run(true));

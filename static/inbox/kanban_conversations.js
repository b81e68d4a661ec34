// The Kanban boards of customer conversations (/inbox/kanban/?board=status|labels).
//
// status: the conversations the agent's list shows, in Open, Snoozed (until the customer
// replies) and Closed (the last 7 days); a card moved to another column snoozes, unsnoozes or
// closes the conversation through the same endpoints as the inbox (docs/api.md §16), and the
// server's rules decide (only an agent in the conversation may; a closed one stays closed).
// labels: the live conversations in one column per label and one without; a move swaps the
// label (POST /api/v1/kefu/conversations/<id>/labels). A card is moved by dragging it or, from
// the keyboard, with its "Move to" list. The board reloads on the push events of a watching
// socket (it does not make the agent available for new conversations).
import { api } from '../weiyu/api.js';
import { WeiyuClient } from '../weiyu/client.js';
import { $, el, pageConfig } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';

const config = pageConfig();
const board = $('kanban');
const statusLine = $('kanban-status');
const NONE = 'none'; // the labels board's column of conversations without a label
let columns = []; // [[key, name]]
const lists = new Map(); // column key -> the column's card list

function say(text) {
  statusLine.textContent = text;
}

const STATUS_COLUMNS = [
  ['open', gettext('Open')],
  ['snoozed', gettext('Snoozed')],
  ['closed', gettext('Closed')],
];

function statusOf(row) {
  if (row.status === 'closed') return 'closed';
  return row.snoozed ? 'snoozed' : 'open';
}

/** The request a status move makes, or a refusal (a text) when no service does that move. */
function statusRequest(id, from, to) {
  if (from === 'closed') return gettext('A closed conversation cannot be opened again; the customer starts a new one by writing.');
  if (to === 'closed') return ['POST', `/api/v1/kefu/conversations/${id}/close`, {}];
  if (to === 'snoozed') return ['POST', `/api/v1/kefu/conversations/${id}/snooze`, { until: null }];
  return ['DELETE', `/api/v1/kefu/conversations/${id}/snooze`, undefined];
}

function labelRequest(id, from, to) {
  const body = {};
  if (to !== NONE) body.add = [Number(to)];
  if (from !== NONE) body.remove = [Number(from)];
  return ['POST', `/api/v1/kefu/conversations/${id}/labels`, body];
}

async function move(card, to) {
  const from = card.dataset.column;
  const select = card.querySelector('select');
  if (from === to) return;
  const request = config.board === 'status'
    ? statusRequest(card.dataset.id, from, to)
    : labelRequest(card.dataset.id, from, to);
  if (typeof request === 'string') {
    select.value = from;
    say(request);
    return;
  }
  try {
    await api(...request);
    say(interpolate(gettext('%(name)s moved.'), { name: card.dataset.name }, true));
    await load(false);
  } catch (e) {
    select.value = from;
    say(e.message);
  }
}

function cardFor(row, column) {
  const card = el('article', 'kanban-card');
  card.draggable = true;
  card.dataset.id = row.conversation_id;
  card.dataset.column = column;
  card.dataset.name = row.visitor.name;
  const preview = row.customer_message ? row.customer_message.content : '';
  card.append(
    el('strong', 'kanban-title', row.visitor.name),
    el('span', 'kanban-preview', preview),
    el('span', 'kanban-meta', [row.agent ? row.agent.name : gettext('Unassigned'), row.workgroup.name].join(' · ')),
  );
  if (config.board === 'status' && row.labels.length) {
    card.append(el('span', 'kanban-meta', row.labels.map((l) => l.name).join(', ')));
  }
  const label = el('label', 'kanban-move', gettext('Move to') + ' ');
  const select = document.createElement('select');
  for (const [key, name] of columns) select.append(new Option(name, key));
  select.value = column;
  select.addEventListener('change', () => move(card, select.value));
  label.append(select);
  card.append(label);
  card.addEventListener('dragstart', (e) => {
    e.dataTransfer.setData('text/plain', `${card.dataset.id}:${column}`);
    e.dataTransfer.effectAllowed = 'move';
  });
  return card;
}

function buildColumns() {
  board.replaceChildren();
  lists.clear();
  board.style.gridTemplateColumns = `repeat(${columns.length}, minmax(180px, 1fr))`;
  for (const [key, name] of columns) {
    const col = el('section', 'kanban-col');
    col.dataset.column = key;
    const head = el('h2', 'kanban-head', name + ' ');
    head.append(el('span', 'kanban-count', '0'));
    const list = el('div', 'kanban-list');
    col.append(head, list);
    col.addEventListener('dragover', (e) => {
      e.preventDefault();
      col.classList.add('over');
    });
    col.addEventListener('dragleave', () => col.classList.remove('over'));
    col.addEventListener('drop', (e) => {
      e.preventDefault();
      col.classList.remove('over');
      const [id, from] = e.dataTransfer.getData('text/plain').split(':');
      const card = board.querySelector(`.kanban-col[data-column="${CSS.escape(from)}"] .kanban-card[data-id="${CSS.escape(id)}"]`);
      if (card) move(card, key);
    });
    lists.set(key, list);
    board.append(col);
  }
}

function fill(byColumn) {
  for (const [key] of columns) {
    const list = lists.get(key);
    list.replaceChildren(...(byColumn.get(key) || []));
    list.closest('.kanban-col').querySelector('.kanban-count').textContent = String(list.children.length);
  }
}

let loading = 0;
async function load(announce = true) {
  const mine = ++loading;
  if (announce) say(gettext('Loading…'));
  try {
    const byColumn = new Map();
    const put = (key, card) => {
      if (!byColumn.has(key)) byColumn.set(key, []);
      byColumn.get(key).push(card);
    };
    if (config.board === 'status') {
      const [live, closed] = await Promise.all([
        api('GET', '/api/v1/kefu/conversations?view=open&limit=200'),
        api('GET', '/api/v1/kefu/conversations?view=closed&limit=100'),
      ]);
      if (mine !== loading) return;
      if (!columns.length) {
        columns = STATUS_COLUMNS;
        buildColumns();
      }
      for (const row of [...live.conversations, ...closed.conversations]) {
        if (row.status !== 'open' && row.status !== 'closed') continue; // the queue and the robot's
        put(statusOf(row), cardFor(row, statusOf(row)));
      }
    } else {
      const [views, live] = await Promise.all([
        api('GET', '/api/v1/kefu/views'),
        api('GET', '/api/v1/kefu/conversations?view=open&limit=200'),
      ]);
      if (mine !== loading) return;
      const wanted = [[NONE, gettext('No label')], ...views.labels.map((l) => [String(l.id), l.name])];
      if (JSON.stringify(wanted) !== JSON.stringify(columns)) {
        columns = wanted;
        buildColumns();
      }
      for (const row of live.conversations) {
        if (!row.labels.length) put(NONE, cardFor(row, NONE));
        for (const l of row.labels) put(String(l.id), cardFor(row, String(l.id)));
      }
    }
    fill(byColumn);
    board.dataset.loaded = String(mine);
    if (announce) say('');
  } catch (e) {
    say(e.message);
  }
}

// live: what changes a conversation's column rings a doorbell; one reload for a burst
const LIVE = new Set([
  'views.changed', 'conversation.labels', 'conversation.snoozed', 'conversation.closed',
  'conversation.assigned', 'conversation.new', 'queue.changed',
]);
let timer = null;
function onFrame(frame) {
  if (!LIVE.has(frame.type)) return;
  clearTimeout(timer);
  timer = setTimeout(() => load(false), 300);
}
const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
// after a reconnect, events may have been missed: read the board again
new WeiyuClient({
  url: scheme + location.host + config.ws_path,
  onFrame,
  onState: (s) => s === 'open' && board.dataset.loaded && load(false),
});

$('kanban-reload').addEventListener('click', () => load());
load();

// The Kanban board of tickets (/inbox/kanban/): one column per status, cards dragged between
// columns (or moved with their "Move to" list, for the keyboard) change the ticket's status
// through PATCH /api/v1/tickets/<id>; a move the rules refuse (409) leaves the card where it was.
import { api } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';

const COLUMNS = [
  ['new', gettext('New')],
  ['open', gettext('Open')],
  ['pending', gettext('Pending')],
  ['on_hold', gettext('On hold')],
  ['solved', gettext('Solved')],
];
const board = $('kanban');
const statusLine = $('kanban-status');
const lists = new Map(); // status -> the column's card list

function say(text) {
  statusLine.textContent = text;
}

function count(status) {
  const col = lists.get(status);
  col.closest('.kanban-col').querySelector('.kanban-count').textContent = String(col.children.length);
}

async function move(card, status) {
  const from = card.dataset.status;
  if (from === status) return;
  try {
    const t = await api('PATCH', `/api/v1/tickets/${card.dataset.id}`, { status });
    card.dataset.status = t.status;
    card.querySelector('select').value = t.status;
    lists.get(t.status).prepend(card);
    count(from);
    count(t.status);
    say(interpolate(gettext('#%(number)s moved.'), { number: t.number }, true));
  } catch (e) {
    card.querySelector('select').value = from;
    say(e.message);
  }
}

function cardFor(t) {
  const card = el('article', 'kanban-card');
  card.draggable = true;
  card.dataset.id = t.id;
  card.dataset.status = t.status;
  card.append(
    el('strong', 'kanban-title', `#${t.number} ${t.subject}`),
    el('span', 'kanban-meta', [t.requester && t.requester.name, t.assignee && t.assignee.name].filter(Boolean).join(' · ')),
  );
  const label = el('label', 'kanban-move', gettext('Move to') + ' ');
  const select = document.createElement('select');
  for (const [value, name] of COLUMNS) select.append(new Option(name, value));
  select.value = t.status;
  select.addEventListener('change', () => move(card, select.value));
  label.append(select);
  card.append(label);
  card.addEventListener('dragstart', (e) => {
    e.dataTransfer.setData('text/plain', card.dataset.id);
    e.dataTransfer.effectAllowed = 'move';
  });
  return card;
}

function buildColumns() {
  for (const [status, name] of COLUMNS) {
    const col = el('section', 'kanban-col');
    col.dataset.status = status;
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
      const card = board.querySelector(`.kanban-card[data-id="${e.dataTransfer.getData('text/plain')}"]`);
      if (card) move(card, status);
    });
    lists.set(status, list);
    board.append(col);
  }
}

async function load() {
  say(gettext('Loading…'));
  try {
    const answers = await Promise.all(COLUMNS.map(([status]) => api('GET', `/api/v1/tickets?status=${status}&limit=100`)));
    answers.forEach((answer, i) => {
      const status = COLUMNS[i][0];
      lists.get(status).replaceChildren(...answer.tickets.map(cardFor));
      count(status);
    });
    say('');
  } catch (e) {
    say(e.message);
  }
}

buildColumns();
$('kanban-reload').addEventListener('click', load);
load();

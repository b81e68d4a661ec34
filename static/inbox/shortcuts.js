// Keyboard shortcuts of the inbox; `?` lists them (the dialog in inbox.html is the reference).
// They never fire while one types in a field: there Enter (or Ctrl+Enter) sends and Esc leaves
// the field, so every key works again.
import { $ } from '../weiyu/dom.js';
import { gettext } from '../weiyu/i18n.js';
import { select, shownEntries, takeRow } from './conversations.js';
import { toast } from './notifications.js';
import { selectedConversation, state } from './store.js';
import { VIEW_ORDER, focusLabels, showView } from './views.js';

const dialog = $('shortcuts-dialog');

function typing(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName);
}

/** The list entry the keys act on: the focused row, else the selected conversation. */
function current() {
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('.conv-row');
  const id = focused ? Number(focused.dataset.id) : state.selected;
  return shownEntries().findIndex((e) => e.id === id);
}

function itemOf(id) {
  return document.querySelector(`#conv-list .conv-row[data-id="${id}"] .conv-item`);
}

/** Move to the next (+1) or previous (-1) conversation of the list: open it when it is ours,
 * otherwise only put the focus on it (Enter then takes or shows it). */
function move(step) {
  if (state.tab === 'tickets') return;
  const entries = shownEntries();
  if (!entries.length) return;
  const at = current();
  const next = entries[at < 0 ? (step > 0 ? 0 : entries.length - 1) : Math.min(entries.length - 1, Math.max(0, at + step))];
  if (next.c) select(next.id);
  const item = itemOf(next.id);
  if (item) {
    item.focus(); // not the reply box: the next key moves on
    item.scrollIntoView({ block: 'nearest' });
  }
}

function assignToMe() {
  const at = current();
  const entry = at < 0 ? null : shownEntries()[at];
  if (entry && entry.row && entry.row.status === 'queued' && !entry.c) takeRow(entry.row);
  else toast(gettext('Choose a waiting conversation to take (the Unassigned view).'));
}

function toggleChecked() {
  const at = current();
  const entry = at < 0 ? null : shownEntries()[at];
  const box = entry && document.querySelector(`#conv-list .conv-row[data-id="${entry.id}"] .conv-check`);
  if (!box || box.hidden) return;
  box.checked = !box.checked;
  box.dispatchEvent(new Event('change'));
}

const keys = {
  j: () => move(1),
  k: () => move(-1),
  r: () => {
    const c = selectedConversation();
    if (c && !c.closed) $('composer').focus();
  },
  x: () => {
    const c = selectedConversation();
    if (c && c.kind === 'visitor' && !c.closed) $('close-conv').click();
  },
  a: assignToMe,
  l: focusLabels,
  c: () => $('canned-link').click(),
  '/': () => $('search-input').focus(),
  '?': () => dialog.showModal(),
  ' ': toggleChecked,
};

document.addEventListener('keydown', (e) => {
  if (e.defaultPrevented || e.isComposing) return;
  if (e.key === 'Escape' && typing(e.target) && !e.target.closest('dialog')) {
    e.target.blur();
    return;
  }
  if (typing(e.target) || document.querySelector('dialog[open]')) return;
  if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
    e.preventDefault();
    move(e.key === 'ArrowDown' ? 1 : -1);
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === ' ' && !(e.target instanceof HTMLElement && e.target.closest('.conv-row'))) return;
  const n = Number(e.key);
  if (n >= 1 && n <= VIEW_ORDER.length && state.tab === 'customers') {
    e.preventDefault();
    showView(VIEW_ORDER[n - 1]);
    return;
  }
  const fn = keys[e.key];
  if (!fn) return;
  e.preventDefault();
  fn();
});

$('shortcuts-link').addEventListener('click', () => dialog.showModal());

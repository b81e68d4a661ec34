// Conversation actions of the header beyond the basics: snoozing a customer conversation (until
// a time, or until the customer replies) and bringing it back. The server pushes
// conversation.snoozed when a snooze starts or ends (an agent, the beat, or the customer's
// reply); the conversation's session is updated and its header and list entry redrawn.
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { dateToZoned, dayTime, zonedToDate, browserZone } from '../weiyu/time.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { emit, on, selectedConversation, state } from './store.js';

const snoozeBtn = $('snooze-btn');
const bar = $('snooze-bar');
const dialog = $('snooze-dialog');
const form = $('snooze-form');
const errorBox = $('snooze-error');

/** Whether the agent can snooze `c` now: an open customer conversation. */
export function snoozable(c) {
  return !!(c && c.kind === 'visitor' && !c.closed && c.session && c.session.status === 'open');
}

/** The line under the header of a snoozed conversation. */
export function snoozeText(session) {
  if (!session || !session.snoozed) return '';
  return session.snoozed_until
    ? interpolate(gettext('Snoozed until %(time)s'), { time: dayTime(session.snoozed_until) }, true)
    : gettext('Snoozed until the customer replies');
}

function renderSnooze() {
  const c = selectedConversation();
  if (!c) return;
  const can = snoozable(c);
  const snoozed = !!(can && c.session.snoozed);
  snoozeBtn.hidden = !can;
  snoozeBtn.setAttribute('aria-pressed', String(snoozed));
  bar.hidden = !snoozed;
  $('snooze-text').textContent = snoozed ? snoozeText(c.session) : '';
}
on('header', renderSnooze);

/** Keep a conversation's snooze (an API answer or a conversation.snoozed frame) and redraw. */
function putSnooze(f) {
  const c = state.convs.get(f.conversation_id);
  if (!c || !c.session) return;
  Object.assign(c.session, { snoozed: f.snoozed, snoozed_at: f.snoozed_at, snoozed_until: f.snoozed_until });
  emit('list');
  if (c.id === state.selected) emit('header');
}
handle('conversation.snoozed', putSnooze);

async function applySnooze(id, method, body) {
  putSnooze(await api(method, `/api/v1/kefu/conversations/${id}/snooze`, body));
}

function untilFor(choice) {
  const now = new Date();
  if (choice === '1h') return new Date(now.getTime() + 3600 * 1000).toISOString();
  if (choice === 'tomorrow') {
    const d = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 9, 0, 0);
    return d.toISOString();
  }
  if (choice === 'reply') return null;
  const at = zonedToDate($('snooze-at').value, browserZone());
  if (!at) throw new Error(gettext('Choose a date and time.'));
  return at.toISOString();
}

snoozeBtn.addEventListener('click', () => {
  errorBox.textContent = '';
  const inAnHour = new Date(Date.now() + 3600 * 1000);
  $('snooze-at').value = dateToZoned(inAnHour, browserZone()).slice(0, 16);
  dialog.showModal();
});
$('snooze-at').addEventListener('focus', () => {
  form.querySelector('input[value="custom"]').checked = true;
});
$('snooze-cancel').addEventListener('click', () => dialog.close());

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = state.selected;
  const choice = form.querySelector('input[name="snooze-choice"]:checked').value;
  errorBox.textContent = '';
  try {
    await applySnooze(id, 'POST', { until: untilFor(choice) });
    dialog.close();
  } catch (err) {
    errorBox.textContent = err.message;
  }
});

$('unsnooze-btn').addEventListener('click', () => {
  applySnooze(state.selected, 'DELETE').catch((err) => toast(err.message));
});

// ---- splitting a customer's message off into a ticket ---------------------------------------
// Every message of the selected customer conversation that is not a note or a system line gets a
// "Split into a ticket" action beside its time. The messages pane draws them (messages.js); this
// watches it, so neither module needs the other.
const messagesPane = $('messages');

function addSplit(msgEl) {
  const c = selectedConversation();
  if (!c || c.kind !== 'visitor' || !msgEl.dataset.id) return;
  if (msgEl.classList.contains('system') || msgEl.classList.contains('internal') ||
    msgEl.classList.contains('recalled')) return;
  const meta = msgEl.querySelector('.msg-meta');
  if (!meta || meta.querySelector('.msg-split')) return;
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'msg-split link-btn';
  b.textContent = gettext('Split into a ticket');
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      const t = await api('POST', '/api/v1/tickets/from-message', { message_id: Number(msgEl.dataset.id) });
      toast(interpolate(gettext('Ticket #%(number)s created from this message.'), { number: t.number }, true));
    } catch (e) {
      toast(e.message);
    } finally {
      b.disabled = false;
    }
  });
  meta.append(b);
}

new MutationObserver((records) => {
  for (const r of records) {
    const target = r.target.nodeType === 1 ? r.target.closest('.msg') : null;
    if (target) addSplit(target);
    for (const n of r.addedNodes) {
      if (n.nodeType === 1 && n.classList.contains('msg')) addSplit(n);
    }
  }
}).observe(messagesPane, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-id'] });

// ---- export: CSV, JSON, printable transcript ----------------------------------------------
const exportBtn = $('export-btn');
const exportDialog = $('export-dialog');

function renderExport() {
  const c = selectedConversation();
  if (!c) return;
  exportBtn.hidden = c.kind !== 'visitor';
  $('export-csv').href = `/api/v1/kefu/conversations/${c.id}/export?kind=csv`;
  $('export-json').href = `/api/v1/kefu/conversations/${c.id}/export?kind=json`;
  $('export-print').href = `/inbox/conversations/${c.id}/print/`;
}
on('header', renderExport);
exportBtn.addEventListener('click', () => exportDialog.showModal());
$('export-close').addEventListener('click', () => exportDialog.close());

// ---- merging another conversation of the same customer into this one --------------------
const mergeBtn = $('conv-merge-btn');
const mergeDialog = $('merge-dialog');
const mergeForm = $('merge-form');
const mergeList = $('merge-list');

function renderMerge() {
  const c = selectedConversation();
  if (!c) return;
  mergeBtn.hidden = c.kind !== 'visitor';
}
on('header', renderMerge);

mergeBtn.addEventListener('click', async () => {
  const id = state.selected;
  $('merge-error').textContent = '';
  mergeList.replaceChildren();
  try {
    const { candidates } = await api('GET', `/api/v1/kefu/conversations/${id}/merge`);
    for (const k of candidates) {
      const li = document.createElement('li');
      const label = document.createElement('label');
      const radio = document.createElement('input');
      radio.type = 'radio';
      radio.name = 'merge-other';
      radio.value = k.conversation_id;
      label.append(radio, ' ', interpolate(gettext('#%(id)s · %(name)s · %(time)s · %(status)s'), {
        id: k.conversation_id, name: k.visitor, time: dayTime(k.created_at), status: k.status,
      }, true));
      li.append(label);
      mergeList.append(li);
    }
    $('merge-empty').hidden = candidates.length > 0;
    $('merge-ok').disabled = candidates.length === 0;
    mergeDialog.showModal();
  } catch (e) {
    toast(e.message);
  }
});
$('merge-cancel').addEventListener('click', () => mergeDialog.close());

mergeForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const chosen = mergeForm.querySelector('input[name="merge-other"]:checked');
  if (!chosen) {
    $('merge-error').textContent = gettext('Choose a conversation.');
    return;
  }
  try {
    await api('POST', `/api/v1/kefu/conversations/${state.selected}/merge`, {
      other_conversation_id: Number(chosen.value),
    });
    mergeDialog.close();
    toast(gettext('Merged. The printable transcript (📤) has both conversations in order.'));
  } catch (err) {
    $('merge-error').textContent = err.message;
  }
});

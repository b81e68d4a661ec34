// Scheduled replies of the selected customer conversation: write now, send at a time chosen on
// the customer's clock when their browser told us their time zone (else the agent's), edit or
// cancel while it waits. The beat sends it as the agent's reply (docs/inbox.md); every change
// comes back as a scheduled.updated frame.
import { api } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { browserZone, dateToZoned, dayTimeIn, knownZone, zonedToDate } from '../weiyu/time.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { config, on, selectedConversation, state } from './store.js';

// conversation id -> [scheduled] (pending first, then recent failures), the REST shape
state.scheduled = new Map();

const list = $('scheduled-list');
const button = $('schedule-btn');
const dialog = $('schedule-dialog');
const form = $('schedule-form');
const errorBox = $('schedule-error');
let editing = null; // the scheduled message the dialog edits (null: a new one)

const SHOWN = new Set(['pending', 'failed']);

/** The time zone to schedule `c` in: `{zone, customer}` (customer: it is the customer's). */
export function zoneFor(c) {
  const theirs = c && c.session && c.session.visitor && c.session.visitor.timezone;
  if (knownZone(theirs)) return { zone: theirs, customer: true };
  return { zone: browserZone() || 'UTC', customer: false };
}

function canSchedule(c) {
  return !!(c && c.kind === 'visitor' && !c.closed && c.session && c.session.status !== 'closed');
}

function render() {
  const c = selectedConversation();
  list.replaceChildren();
  button.hidden = !canSchedule(c);
  const items = (c && state.scheduled.get(c.id)) || [];
  const shown = items.filter((s) => SHOWN.has(s.state));
  list.hidden = shown.length === 0;
  for (const s of shown) {
    const li = el('li', 'scheduled-item');
    li.dataset.id = s.id;
    li.dataset.state = s.state;
    const zone = knownZone(s.timezone) ? s.timezone : browserZone();
    const when = s.state === 'failed'
      ? interpolate(gettext('Not sent: %(error)s'), { error: s.error }, true)
      : interpolate(gettext('Sends %(time)s (%(zone)s)'), { time: dayTimeIn(s.send_at, zone), zone }, true);
    li.append(el('span', 'scheduled-when', when), el('span', 'scheduled-text', s.content));
    if (s.state === 'pending' && s.author.id === config.user.id) {
      const edit = el('button', 'link-btn scheduled-edit', gettext('Edit'));
      edit.type = 'button';
      edit.addEventListener('click', () => openDialog(s));
      const cancel = el('button', 'link-btn scheduled-cancel', gettext('Cancel'));
      cancel.type = 'button';
      cancel.addEventListener('click', () => cancelScheduled(s));
      li.append(edit, cancel);
    }
    list.append(li);
  }
}

function put(s) {
  const items = state.scheduled.get(s.conversation_id);
  if (!items) return;
  const i = items.findIndex((x) => x.id === s.id);
  if (i >= 0) items[i] = s;
  else items.push(s);
  items.sort((a, b) => (a.state === 'pending' ? 0 : 1) - (b.state === 'pending' ? 0 : 1) ||
    Date.parse(a.send_at) - Date.parse(b.send_at));
}

async function load(id) {
  const c = state.convs.get(id);
  if (!c || c.kind !== 'visitor') return;
  try {
    const data = await api('GET', `/api/v1/kefu/conversations/${id}/scheduled`);
    state.scheduled.set(id, data.scheduled);
  } catch (e) {
    state.scheduled.delete(id);
  }
  if (id === state.selected) render();
}

on('switched', (id) => load(id));
on('header', render);
on('closed', render);

handle('scheduled.updated', (f) => {
  const s = f.scheduled;
  if (!state.scheduled.has(s.conversation_id)) return;
  put(s);
  if (s.state === 'failed' && s.author.id === config.user.id) {
    toast(interpolate(gettext('A scheduled reply was not sent: %(error)s'), { error: s.error }, true));
  }
  if (s.conversation_id === state.selected) render();
});

function openDialog(s) {
  const c = selectedConversation();
  if (!c) return;
  editing = s || null;
  const { zone, customer } = s && knownZone(s.timezone) ? { zone: s.timezone, customer: true } : zoneFor(c);
  form.dataset.zone = zone;
  $('schedule-zone').textContent = customer
    ? interpolate(gettext("In the customer's time zone: %(zone)s (now %(now)s there)"),
      { zone, now: dayTimeIn(new Date().toISOString(), zone) }, true)
    : interpolate(gettext('In your time zone: %(zone)s'), { zone }, true);
  $('schedule-heading').textContent = s ? gettext('Edit the scheduled reply') : gettext('Schedule a reply');
  $('schedule-save').textContent = s ? gettext('Save') : gettext('Schedule');
  $('schedule-text').value = s ? s.content : $('composer').value;
  const at = s ? new Date(s.send_at) : new Date(Date.now() + 3600 * 1000);
  $('schedule-at').value = dateToZoned(at, zone);
  errorBox.textContent = '';
  dialog.showModal();
  $('schedule-text').focus();
}

async function cancelScheduled(s) {
  try {
    put(await api('DELETE', `/api/v1/kefu/scheduled/${s.id}`));
    render();
  } catch (e) {
    toast(e.message);
  }
}

button.addEventListener('click', () => openDialog(null));
$('schedule-cancel').addEventListener('click', () => dialog.close());

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const zone = form.dataset.zone;
  const at = zonedToDate($('schedule-at').value, zone);
  if (!at) {
    errorBox.textContent = gettext('Choose a date and time.');
    return;
  }
  const body = { content: $('schedule-text').value, send_at: at.toISOString(), timezone: zone };
  const id = state.selected;
  try {
    const saved = editing
      ? await api('PATCH', `/api/v1/kefu/scheduled/${editing.id}`, body)
      : await api('POST', `/api/v1/kefu/conversations/${id}/scheduled`, body);
    if (!state.scheduled.has(saved.conversation_id)) state.scheduled.set(saved.conversation_id, []);
    put(saved);
    if (!editing) {
      const composer = $('composer');
      composer.value = '';
      composer.dispatchEvent(new Event('input'));
    }
    dialog.close();
    render();
  } catch (err) {
    errorBox.textContent = err.message;
  }
});

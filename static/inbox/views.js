// The views of the customers list (mine, unassigned, all open, waiting for a reply, closed, by
// workgroup, label or channel, saved views) with live counts; labels on the selected
// conversation and on ticked ones (bulk); the ticking "waiting 5 min" of the list.
//
// Counts and rows come from the server (GET /api/v1/kefu/views, /api/v1/kefu/conversations) and
// are fetched again when a push event changes what they count: a conversation coming, assigned,
// closed or written in (seen through the store's 'list'), the queue moving, labels changing.
import { api } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { labelChip, waitText } from './conversations.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { config, emit, noteSession, on, selectedConversation, state } from './store.js';

const VIEW_NAMES = {
  mine: gettext('Mine'),
  unassigned: gettext('Unassigned'),
  open: gettext('All open'),
  waiting: gettext('Waiting for a reply'),
  snoozed: gettext('Snoozed'),
  closed: gettext('Closed'),
};
const chips = [...document.querySelectorAll('.view-chip')];
const more = $('view-more');
const sort = $('view-sort');

const isDefault = (f) => f.view === 'mine' && !f.workgroup && !f.label && !f.channel && !f.attribute && !f.sort;

// ---- fetching, on push events -------------------------------------------------------------
let timer = null;
/** Fetch the counts (and the rows of a server view) again soon: one fetch for a burst. */
export function viewsDirty() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 250);
}

let seq = 0; // answers may arrive out of order: only the newest is drawn
async function refresh() {
  if (!config.user.is_agent) return;
  const mine = ++seq;
  const filters = { ...state.filters };
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
  try {
    const [counts, list] = await Promise.all([
      api('GET', '/api/v1/kefu/views'),
      isDefault(filters) && !missingPreviews() ? null : api('GET', '/api/v1/kefu/conversations?' + query),
    ]);
    if (mine !== seq) return;
    state.viewCounts = counts;
    state.labels = counts.labels.map((l) => ({ id: l.id, name: l.name, color: l.color, description: l.description }));
    if (list) {
      for (const row of list.conversations) noteSession(row.conversation_id, row);
    }
    state.viewRows = isDefault(state.filters) ? null : list ? list.conversations : state.viewRows;
  } catch (e) {
    return;
  }
  drawBar();
  emit('labels');
  emit('list');
}

// A conversation assigned live carries no customer message: the "mine" rows bring it.
function missingPreviews() {
  for (const c of state.convs.values()) {
    if (c.kind === 'visitor' && !c.closed && !state.customerMsgs.has(c.id)) return true;
  }
  return false;
}

// Redraw counts when what they count may have changed: the visitor conversations we hold, their
// status, agent and newest message (a customer's message starts a wait, a reply ends it).
let signature = '';
on('list', () => {
  let sig = '';
  for (const c of state.convs.values()) {
    if (c.kind !== 'visitor') continue;
    const s = c.session || {};
    sig += `${c.id}:${s.status}:${c.closed ? 1 : 0}:${s.agent ? s.agent.key : ''}:${c.last_seq};`;
  }
  if (sig !== signature) {
    signature = sig;
    viewsDirty();
  }
});
on('resync', viewsDirty);
on('dirty', viewsDirty);

handle('views.changed', viewsDirty); // a colleague's conversation of our workgroups changed

handle('conversation.labels', (f) => {
  state.convLabels.set(f.conversation_id, f.labels);
  for (const row of state.viewRows || []) if (row.conversation_id === f.conversation_id) row.labels = f.labels;
  emit('labels');
  emit('list');
  viewsDirty();
});

// ---- the view bar -------------------------------------------------------------------------
function option(value, text) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text;
  return o;
}

function group(label, options) {
  const g = document.createElement('optgroup');
  g.label = label;
  g.append(...options);
  return g;
}

const counted = (name, n) => (n == null ? name : `${name} (${n})`);

/** The value of "More views" for the current filters ('' for a built-in view). */
function moreValue() {
  const f = state.filters;
  if (state.savedView) return 'saved:' + state.savedView;
  if (f.workgroup) return 'workgroup:' + f.workgroup;
  if (f.label) return 'label:' + f.label;
  if (f.channel) return 'channel:' + f.channel;
  return '';
}

function drawBar() {
  const c = state.viewCounts;
  const f = state.filters;
  const plain = !f.workgroup && !f.label && !f.channel && !f.attribute && !state.savedView;
  for (const chip of chips) {
    const n = c ? c.views[chip.dataset.view] : null;
    chip.querySelector('.view-count').textContent = n == null ? '' : String(n);
    chip.setAttribute('aria-pressed', String(plain && f.view === chip.dataset.view));
  }
  if (!c) return;
  const groups = [
    group(gettext('Workgroups'), c.workgroups.map((w) => option('workgroup:' + w.id, counted(w.name, w.open)))),
    group(gettext('Labels'), c.labels.map((l) => option('label:' + l.id, counted(l.name, l.open)))),
    group(gettext('Channels'), c.channels.map((ch) => option('channel:' + ch.id, counted(ch.name, ch.open)))),
  ];
  if (c.saved.length) {
    groups.push(group(gettext('Saved views'), c.saved.map((s) => option('saved:' + s.id, counted(s.name, s.count)))));
  }
  more.replaceChildren(option('', gettext('More views…')), ...groups.filter((g) => g.children.length));
  more.value = moreValue();
  sort.value = f.sort || '';
  const saved = state.savedView && c.saved.find((s) => s.id === state.savedView);
  $('view-save').hidden = isDefault(f) || !!state.savedView;
  emit('filters');
  $('view-delete').hidden = !saved || (saved.shared && !config.user.is_admin);
}

/** Show other filters: the list is redrawn from the server's rows when they come. */
export function setFilters(filters, savedId = null) {
  state.filters = { view: 'mine', workgroup: null, label: null, channel: null, attribute: null, sort: '', ...filters };
  state.savedView = savedId;
  if (isDefault(state.filters)) state.viewRows = null;
  state.checked.clear();
  emit('checked');
  drawBar();
  emit('view');
  emit('list');
  clearTimeout(timer);
  refresh();
}

/** One of the built-in views, by name (also the keys 1…6). */
export function showView(view) {
  setFilters({ view });
}
export const VIEW_ORDER = ['mine', 'unassigned', 'open', 'waiting', 'snoozed', 'closed'];

for (const chip of chips) chip.addEventListener('click', () => showView(chip.dataset.view));
more.addEventListener('change', () => {
  const [kind, id] = more.value.split(':');
  if (!kind) return showView('mine');
  if (kind === 'saved') {
    const saved = state.viewCounts.saved.find((s) => String(s.id) === id);
    if (saved) setFilters(saved.filters, saved.id);
    return;
  }
  setFilters({ view: 'open', [kind]: Number(id) });
});
sort.addEventListener('change', () => setFilters({ ...state.filters, sort: sort.value }, null));

// ---- saved views --------------------------------------------------------------------------
const dialog = $('view-dialog');
export function describe(f) {
  const parts = [VIEW_NAMES[f.view]];
  const c = state.viewCounts || { workgroups: [], labels: [], channels: [] };
  const name = (list, id) => (list.find((x) => x.id === id) || {}).name;
  if (f.workgroup) parts.push(name(c.workgroups, f.workgroup));
  if (f.label) parts.push(name(c.labels, f.label));
  if (f.channel) parts.push(name(c.channels, f.channel));
  if (f.attribute) parts.push(f.attribute);
  if (f.sort === 'waiting') parts.push(gettext('Longest waiting first'));
  return parts.filter(Boolean).join(' · ');
}

$('view-save').addEventListener('click', () => {
  $('vd-summary').textContent = describe(state.filters);
  $('vd-name').value = describe(state.filters).slice(0, 60);
  $('vd-shared').checked = false;
  $('vd-shared-wrap').hidden = !config.user.is_admin;
  $('vd-error').textContent = '';
  dialog.showModal();
  $('vd-name').select();
});
$('vd-cancel').addEventListener('click', () => dialog.close());
$('view-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const saved = await api('POST', '/api/v1/kefu/saved-views', {
      name: $('vd-name').value,
      filters: state.filters,
      shared: $('vd-shared').checked,
    });
    dialog.close();
    state.savedView = saved.id;
    toast(interpolate(gettext('View “%(name)s” saved.'), { name: saved.name }, true));
    viewsDirty();
  } catch (err) {
    $('vd-error').textContent = err.message;
  }
});
$('view-delete').addEventListener('click', async () => {
  try {
    await api('DELETE', `/api/v1/kefu/saved-views/${state.savedView}`);
  } catch (err) {
    toast(err.message);
  }
  showView('mine');
});

// ---- labels of the selected conversation --------------------------------------------------
const labelBox = $('conv-labels');
const labelAdd = $('conv-label-add');

async function changeLabels(ids, body) {
  try {
    const r = await api(
      'POST',
      ids.length === 1 ? `/api/v1/kefu/conversations/${ids[0]}/labels` : '/api/v1/kefu/conversations/labels',
      ids.length === 1 ? body : { conversation_ids: ids, ...body },
    );
    for (const c of r.conversations) state.convLabels.set(c.conversation_id, c.labels);
    emit('labels');
    emit('list');
    viewsDirty();
    return true;
  } catch (err) {
    toast(err.message);
    return false;
  }
}

function drawConvLabels() {
  const c = selectedConversation();
  labelBox.hidden = !c || c.kind !== 'visitor';
  if (labelBox.hidden) return;
  const have = state.convLabels.get(c.id) || [];
  $('conv-label-chips').replaceChildren(
    ...have.map((label) => {
      const chip = labelChip(label);
      const x = el('button', 'label-remove', '×');
      x.type = 'button';
      x.setAttribute('aria-label', interpolate(gettext('Remove the label %(name)s'), { name: label.name }, true));
      x.addEventListener('click', () => changeLabels([c.id], { remove: [label.id] }));
      chip.append(x);
      return chip;
    }),
  );
  const ids = new Set(have.map((l) => l.id));
  labelAdd.replaceChildren(
    option('', gettext('+ Label')),
    ...state.labels.filter((l) => !ids.has(l.id)).map((l) => option(String(l.id), l.name)),
  );
  labelAdd.disabled = labelAdd.options.length < 2;
}
on('header', drawConvLabels);
on('labels', drawConvLabels);
labelAdd.addEventListener('change', async () => {
  const c = selectedConversation();
  const id = Number(labelAdd.value);
  if (!c || !id) return;
  await changeLabels([c.id], { add: [id] });
  labelAdd.focus();
});

/** Open the label picker of the selected conversation (the key l). */
export function focusLabels() {
  if (!labelBox.hidden && !labelAdd.disabled) labelAdd.focus();
}

// ---- bulk: label the ticked conversations --------------------------------------------------
const bulkBar = $('conv-bulk-bar');
const bulkLabel = $('conv-bulk-label');
function drawBulk() {
  for (const id of [...state.checked]) {
    if (!state.convs.has(id) && !(state.viewRows || []).some((r) => r.conversation_id === id)) state.checked.delete(id);
  }
  const n = state.checked.size;
  bulkBar.hidden = n === 0;
  $('conv-bulk-count').textContent = interpolate(gettext('%(n)s selected'), { n }, true);
  bulkLabel.replaceChildren(
    option('', gettext('Label them…')),
    group(gettext('Add'), state.labels.map((l) => option('add:' + l.id, interpolate(gettext('Add %(name)s'), { name: l.name }, true)))),
    group(gettext('Remove'), state.labels.map((l) => option('remove:' + l.id, interpolate(gettext('Remove %(name)s'), { name: l.name }, true)))),
  );
}
on('checked', drawBulk);
on('labels', drawBulk);
bulkLabel.addEventListener('change', async () => {
  const [action, id] = bulkLabel.value.split(':');
  if (!action) return;
  const ids = [...state.checked];
  if (await changeLabels(ids, { [action]: [Number(id)] })) {
    toast(interpolate(gettext('%(n)s conversations labelled.'), { n: ids.length }, true));
  }
  bulkLabel.value = '';
});
$('conv-bulk-clear').addEventListener('click', () => {
  state.checked.clear();
  emit('checked');
  emit('list');
});

// ---- the waiting clock ---------------------------------------------------------------------
setInterval(() => {
  for (const w of document.querySelectorAll('.conv-wait[data-since]')) w.textContent = waitText(w.dataset.since);
}, 15000);

drawBar();
refresh();

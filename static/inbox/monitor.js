// The supervisors' live monitor: the snapshot API, read every few seconds.
import { $, pageConfig } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';

const config = pageConfig();
const REFRESH_MS = 3000;

const STATUS = {
  robot: gettext('with the robot'),
  queued: gettext('queued'),
  open: gettext('open'),
};

function seconds(s) {
  if (s == null) return '—';
  if (s < 60) return interpolate(gettext('%(n)s s'), { n: s }, true);
  return interpolate(gettext('%(m)s min %(s)s s'), { m: Math.floor(s / 60), s: s % 60 }, true);
}

function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

// The conversations' filters and page (docs/api.md §12): the query of every refresh.
const PAGE = 100;
let offset = 0;
let total = 0;
const FILTERS = ['workgroup', 'agent', 'status', 'waiting', 'order'];

function query() {
  const params = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
  for (const name of FILTERS) {
    const value = $('f-' + name).value;
    if (value) params.set(name, value);
  }
  return `${config.api}?${params}`;
}

// Keep a select's options in step with the data, keeping the choice (and the fixed options).
function fillSelect(select, options) {
  const chosen = select.value;
  for (const o of [...select.options]) if (o.dataset.dynamic) o.remove();
  for (const [value, label] of options) {
    const o = document.createElement('option');
    o.value = String(value);
    o.textContent = label;
    o.dataset.dynamic = '1';
    select.append(o);
  }
  select.value = chosen;
  if (select.value !== chosen) select.value = '';
}

function renderFilters(data) {
  fillSelect($('f-workgroup'), data.workgroups.map((wg) => [wg.id, wg.name]));
  const agents = new Map();
  for (const wg of data.workgroups) for (const a of wg.agents) agents.set(a.id, a.name);
  fillSelect($('f-agent'), [...agents].sort((a, b) => a[1].localeCompare(b[1])));
}

function renderPager(data) {
  total = data.total;
  const shown = data.conversations.length;
  $('conv-count').textContent = shown
    ? interpolate(gettext('%(first)s–%(last)s of %(total)s conversations'), { first: data.offset + 1, last: data.offset + shown, total }, true)
    : '';
  $('page-prev').disabled = offset === 0;
  $('page-next').disabled = offset + PAGE >= total;
}

function render(data) {
  renderFilters(data);
  renderPager(data);
  const wgBody = $('wg-table').querySelector('tbody');
  wgBody.replaceChildren();
  for (const wg of data.workgroups) {
    const tr = document.createElement('tr');
    tr.dataset.workgroup = wg.id;
    cell(tr, wg.name);
    const online = wg.agents.filter((a) => a.status === 'online');
    cell(tr, `${online.length} / ${wg.agents.length}`, 'online');
    cell(tr, wg.agents.map((a) => `${a.name} ${a.open_count}/${a.max_concurrent}${a.status === 'online' ? '' : ' (' + a.status + ')'}`).join(', ') || '—', 'load');
    cell(tr, String(wg.queue_length), 'queue');
    cell(tr, wg.queue_length ? seconds(wg.longest_wait_s) : '—', 'longest');
    cell(tr, String(wg.in_progress), 'progress');
    cell(tr, String(wg.with_robot), 'robot');
    wgBody.append(tr);
  }
  const convBody = $('conv-table').querySelector('tbody');
  convBody.replaceChildren();
  for (const c of data.conversations) {
    const tr = document.createElement('tr');
    tr.dataset.conversation = c.conversation_id;
    cell(tr, c.visitor);
    cell(tr, c.workgroup);
    cell(tr, c.agent || '—');
    cell(tr, STATUS[c.status] || c.status);
    cell(tr, seconds(c.waiting_s), c.waiting_s != null && c.waiting_s > 60 ? 'late' : '');
    const td = cell(tr, '');
    const a = document.createElement('a');
    a.href = `conversations/${c.conversation_id}/`;
    a.textContent = gettext('Read');
    td.append(a);
    convBody.append(tr);
  }
  $('conv-empty').hidden = data.conversations.length > 0;
  $('monitor-at').textContent = interpolate(gettext('Updated %(time)s'), { time: new Date(data.at).toLocaleTimeString() }, true);
}

let timer = null;
let asked = 0; // the newest request: an older answer that comes late is dropped
async function refresh() {
  clearTimeout(timer);
  const n = ++asked;
  try {
    const res = await fetch(query(), { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (res.ok && n === asked) {
      const data = await res.json();
      if (data.offset > 0 && data.offset >= data.total) {
        offset = Math.max(0, Math.floor((data.total - 1) / PAGE) * PAGE); // the page emptied
        refresh();
        return;
      }
      render(data);
    }
  } catch (e) {
    /* next round */
  }
  if (n === asked) timer = setTimeout(refresh, REFRESH_MS);
}

for (const name of FILTERS) {
  $('f-' + name).addEventListener('change', () => {
    offset = 0;
    refresh();
  });
}
$('page-prev').addEventListener('click', () => {
  offset = Math.max(0, offset - PAGE);
  refresh();
});
$('page-next').addEventListener('click', () => {
  if (offset + PAGE < total) offset += PAGE;
  refresh();
});

refresh();

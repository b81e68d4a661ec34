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

function render(data) {
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

async function refresh() {
  try {
    const res = await fetch(config.api, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (res.ok) render(await res.json());
  } catch (e) {
    /* next round */
  }
  setTimeout(refresh, REFRESH_MS);
}

refresh();

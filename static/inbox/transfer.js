// Handing a visitor conversation to a colleague or a workgroup, inviting a colleague in, and the
// offers colleagues make to us (accept or decline).
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { selectWhenHere } from './conversations.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { config, selectedConversation } from './store.js';

/** Show the transfer form under a visitor conversation `c` the agent serves (and load the team). */
export function renderTransfer(c) {
  const s = c.session || {};
  const mine = s.status === 'open' && s.agent && s.agent.id === config.user.id;
  $('transfer-form').hidden = !mine || !!c.closed;
  if (mine) loadTeam();
}

let teamLoadedAt = 0;
async function loadTeam() {
  if (Date.now() - teamLoadedAt < 10000) return;
  teamLoadedAt = Date.now();
  let team;
  try {
    team = await api('GET', '/api/v1/kefu/agents');
  } catch (e) {
    return;
  }
  const agents = $('transfer-agents');
  const groups = $('transfer-groups');
  agents.replaceChildren();
  groups.replaceChildren();
  for (const a of team.agents) {
    if (a.id === config.user.id || a.status !== 'online') continue;
    const o = document.createElement('option');
    o.value = 'a:' + a.id;
    o.textContent = `${a.name} (${a.open_count}/${a.max_concurrent})`;
    agents.append(o);
  }
  for (const w of team.workgroups) {
    const o = document.createElement('option');
    o.value = 'w:' + w.id;
    o.textContent = w.name;
    groups.append(o);
  }
}

$('transfer-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const c = selectedConversation();
  const target = $('transfer-target').value;
  if (!c || !target) return;
  const body = { conversation_id: c.id, note: $('transfer-note').value.trim() };
  if (target.startsWith('a:')) body.to_agent_id = Number(target.slice(2));
  else body.to_workgroup_id = Number(target.slice(2));
  try {
    const t = await api('POST', '/api/v1/kefu/transfers', body);
    $('transfer-note').value = '';
    $('transfer-status').textContent = t.status === 'pending'
      ? interpolate(gettext('Waiting for %(name)s to accept…'), { name: t.to_agent.name }, true)
      : gettext('Transferred.');
  } catch (err) {
    toast(err.message);
  }
});

$('invite-btn').addEventListener('click', async () => {
  const c = selectedConversation();
  const target = $('transfer-target').value;
  if (!c || !target.startsWith('a:')) {
    toast(gettext('Choose a colleague to invite.'));
    return;
  }
  try {
    const r = await api('POST', '/api/v1/kefu/invites', { conversation_id: c.id, agent_id: Number(target.slice(2)) });
    toast(interpolate(gettext('%(name)s was invited.'), { name: r.agent.name }, true));
  } catch (err) {
    toast(err.message);
  }
});

// Offers from colleagues: accept or decline, until answered or expired.
const offers = new Map(); // transfer id -> element
function showOffer(t) {
  let el = offers.get(t.id);
  if (t.status !== 'pending' || !t.to_agent || t.to_agent.id !== config.user.id) {
    if (el) el.remove();
    offers.delete(t.id);
    return;
  }
  if (el) return;
  el = document.createElement('div');
  el.className = 'transfer-offer';
  el.dataset.id = t.id;
  const text = document.createElement('p');
  text.textContent = interpolate(gettext('%(agent)s wants to transfer %(visitor)s to you.'), { agent: t.from.name, visitor: t.visitor.name }, true);
  el.append(text);
  if (t.note) {
    const note = document.createElement('p');
    note.className = 'hint';
    note.textContent = t.note;
    el.append(note);
  }
  for (const [action, label] of [['accept', gettext('Accept')], ['decline', gettext('Decline')]]) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn btn-small' + (action === 'accept' ? ' btn-primary' : '');
    b.dataset.action = action;
    b.textContent = label;
    b.addEventListener('click', async () => {
      try {
        const r = await api('POST', `/api/v1/kefu/transfers/${t.id}/${action}`);
        showOffer(r);
        if (action === 'accept') {
          selectWhenHere(r.conversation_id); // its conversation.assigned may still be on its way
        }
      } catch (err) {
        toast(err.message);
        showOffer({ ...t, status: 'gone' });
      }
    });
    el.append(b);
  }
  offers.set(t.id, el);
  $('transfer-offers').append(el);
}

function onTransfer(t) {
  showOffer(t);
  if (t.from && t.from.id === config.user.id && t.status !== 'pending') {
    const name = (t.to_agent && t.to_agent.name) || (t.to_workgroup && t.to_workgroup.name) || '';
    const text = {
      accepted: gettext('%(name)s took the conversation.'),
      declined: gettext('%(name)s declined the transfer.'),
      expired: gettext('%(name)s did not answer the transfer.'),
      cancelled: gettext('The transfer was cancelled.'),
    }[t.status];
    if (text) toast(interpolate(text, { name }, true));
    $('transfer-status').textContent = '';
  }
}

async function loadOffers() {
  try {
    const data = await api('GET', '/api/v1/kefu/transfers');
    for (const t of data.transfers) showOffer(t);
  } catch (e) { /* shown when the next event arrives */ }
}
if (config.user.is_agent) loadOffers();
handle('transfer.requested', (f) => onTransfer(f.transfer));
handle('transfer.updated', (f) => onTransfer(f.transfer));

// The agent's own status in the top bar (online, busy, offline…) and their load (open
// conversations / maximum).
import { $ } from '../weiyu/dom.js';
import { gettext } from '../weiyu/i18n.js';
import { client } from './connection.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { on, state, statusOf } from './store.js';

const statusSelect = $('agent-status');

function setAgentStatus(f) {
  if (!f || !f.status) return;
  state.agentStatus = f.status;
  statusSelect.value = f.status;
  $('status-wrap').dataset.status = f.status;
  if (f.max_concurrent != null) state.maxConcurrent = f.max_concurrent;
  renderLoad();
}

// Counted from the list rather than taken from agent.status, which only comes on status changes.
function renderLoad() {
  if (state.maxConcurrent == null) return;
  let open = 0;
  for (const c of state.convs.values()) if (statusOf(c) === 'open') open++;
  $('agent-load').textContent = `${open}/${state.maxConcurrent}`;
}

handle('hello', (f) => {
  if (f.member) state.me = f.member.key;
  setAgentStatus(f.agent);
});
handle('agent.status', setAgentStatus);
on('list', renderLoad);
on('connection', (connState) => {
  statusSelect.disabled = connState !== 'open';
});

statusSelect.addEventListener('change', () => {
  const wanted = statusSelect.value;
  client.setAgentStatus(wanted).catch((e) => {
    toast(e.message && e.code !== 'disconnected' ? e.message : gettext('Could not change your status. Try again.'));
    if (state.agentStatus) statusSelect.value = state.agentStatus;
  });
});

// The agent's own status in the top bar (online, busy, offline…) and their load: open customer
// conversations / maximum — the server's count (hello, then agent.status on every change), the
// same number the monitor and the back office show; team chats are not load.
import { $ } from '../weiyu/dom.js';
import { gettext } from '../weiyu/i18n.js';
import { client } from './connection.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { on, state } from './store.js';

const statusSelect = $('agent-status');

function setAgentStatus(f) {
  if (!f || !f.status) return;
  state.agentStatus = f.status;
  statusSelect.value = f.status;
  $('status-wrap').dataset.status = f.status;
  if (f.max_concurrent != null) state.maxConcurrent = f.max_concurrent;
  if (f.open_count != null) state.openCount = f.open_count;
  renderLoad();
}

function renderLoad() {
  if (state.maxConcurrent == null || state.openCount == null) return;
  $('agent-load').textContent = `${state.openCount}/${state.maxConcurrent}`;
}

handle('hello', (f) => {
  if (f.member) state.me = f.member.key;
  setAgentStatus(f.agent);
});
handle('agent.status', setAgentStatus);
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

// The queues of the agent's workgroups: who waits, and taking one where the workgroup allows.
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { gettext } from '../weiyu/i18n.js';
import { selectWhenHere } from './conversations.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { config, emit, on } from './store.js';

let queueTimer = null;
function queueChanged() {
  emit('dirty'); // the views' counts too
  clearTimeout(queueTimer);
  queueTimer = setTimeout(loadQueue, 150); // one fetch for a burst of changes
}

let queueSeq = 0; // answers may arrive out of order: only the newest is drawn
async function loadQueue() {
  if (!config.user.is_agent) return;
  const seq = ++queueSeq;
  let data;
  try {
    data = await api('GET', '/api/v1/kefu/queue');
  } catch (e) {
    return;
  }
  if (seq !== queueSeq) return;
  const list = $('queue-list');
  list.replaceChildren();
  let count = 0;
  for (const wg of data.workgroups) {
    for (const w of wg.waiting) {
      count++;
      const li = document.createElement('li');
      li.className = 'queue-item';
      li.dataset.session = w.session_id;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = w.visitor;
      const preview = document.createElement('span');
      preview.className = 'preview';
      preview.textContent = `${wg.name} · ${w.preview}`;
      li.append(who, preview);
      if (wg.allow_pick) {
        const take = document.createElement('button');
        take.type = 'button';
        take.className = 'btn btn-small queue-take';
        take.textContent = gettext('Take');
        take.addEventListener('click', async () => {
          take.disabled = true;
          try {
            const r = await api('POST', `/api/v1/kefu/queue/${w.session_id}/pick`);
            selectWhenHere(r.conversation_id);
          } catch (err) {
            toast(err.message);
          }
          loadQueue();
        });
        li.append(take);
      }
      list.append(li);
    }
  }
  $('queue-count').textContent = String(count);
  $('queue-box').hidden = count === 0;
}
loadQueue();
handle('queue.changed', queueChanged);
on('resync', queueChanged); // what moved while the socket was down

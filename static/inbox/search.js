// Message search across the agent's conversations, and jumping to a hit.
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { fullTime, shortTime } from '../weiyu/time.js';
import { refreshConversation, select } from './conversations.js';
import { showAround } from './messages.js';
import { toast } from './notifications.js';
import { state, titleOf } from './store.js';

const searchInput = $('search-input');
const searchResults = $('search-results');
let searchTimer = null;
let searchSeq = 0;

async function runSearch() {
  const q = searchInput.value.trim();
  const ticket = ++searchSeq;
  if (!q) {
    searchResults.hidden = true;
    searchResults.replaceChildren();
    return;
  }
  let data;
  try {
    data = await api('GET', '/api/v1/im/search?' + new URLSearchParams({ q, limit: '30' }));
  } catch (e) {
    if (ticket === searchSeq) {
      searchResults.replaceChildren(Object.assign(document.createElement('p'), { className: 'pane-empty', textContent: e.message }));
      searchResults.hidden = false;
    }
    return;
  }
  if (ticket !== searchSeq) return;
  searchResults.replaceChildren();
  const head = document.createElement('p');
  head.className = 'search-head';
  head.textContent = data.results.length
    ? interpolate(gettext('Messages matching “%(q)s”'), { q }, true)
    : interpolate(gettext('No messages match “%(q)s”.'), { q }, true);
  searchResults.append(head);
  for (const r of data.results) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'search-hit';
    const known = state.convs.get(r.conversation.id);
    const where = document.createElement('span');
    where.className = 'hit-where';
    where.textContent = known ? titleOf(known) : r.conversation.title || '#' + r.conversation.id;
    const when = document.createElement('time');
    when.className = 'hit-time';
    when.textContent = shortTime(r.message.created_at);
    when.title = fullTime(r.message.created_at);
    const who = document.createElement('span');
    who.className = 'hit-text';
    who.textContent = `${(r.message.sender && r.message.sender.name) || ''}: ${r.highlight || r.message.content}`;
    b.append(where, when, who);
    b.addEventListener('click', () => jumpTo(r.conversation.id, r.message.seq));
    searchResults.append(b);
  }
  searchResults.hidden = false;
}

searchInput.addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 300);
});
searchInput.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') {
    searchInput.value = '';
    runSearch();
  }
});

/** Open a conversation at message `seq`: load the page around it and show it highlighted. */
export async function jumpTo(conversationId, seq) {
  if (!state.convs.has(conversationId) && !(await refreshConversation(conversationId))) return;
  select(conversationId);
  let page;
  try {
    page = await api('GET', `/api/v1/im/conversations/${conversationId}/messages?around_seq=${seq}&limit=40`);
  } catch (e) {
    toast(e.message);
    return;
  }
  if (state.selected !== conversationId) return;
  showAround(conversationId, page.messages, seq);
}

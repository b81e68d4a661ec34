// The side panel for a visitor conversation: who the visitor is (page, language, device,
// tags, notes, trail, past conversations, satisfaction), suggested answers from the knowledge
// base, the AI draft, and blocking the visitor.
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { kindOf } from '../weiyu/render.js';
import { fullTime, hhmm } from '../weiyu/time.js';
import { appendToComposer } from './composer.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { STATUS_TEXT, config, emit, on, selectedConversation, state, statusOf } from './store.js';
import { renderTransfer } from './transfer.js';

on('side', () => {
  const c = selectedConversation();
  const kind = c ? c.kind : null;
  $('visitor-heading').hidden = kind !== null && kind !== 'visitor';
  if (kind !== 'visitor') $('kb-suggest').hidden = $('block-form').hidden = true;
  if (kind === 'direct' || kind === 'group') {
    $('visitor-none').hidden = true;
    $('visitor-details').hidden = true;
  } else {
    renderVisitor();
  }
});
on('incoming', (m) => {
  const c = selectedConversation();
  if (c && c.kind === 'visitor' && kindOf(m, state.me) === 'theirs') suggestReplies();
});

// ---- suggested replies from the knowledge base ------------------------------------------
let suggestFor = null; // "conversation:seq" the suggestions were made for
async function suggestReplies() {
  const c = selectedConversation();
  const box = $('kb-suggest');
  if (!c || c.kind !== 'visitor' || c.closed) {
    box.hidden = true;
    return;
  }
  const msgs = [...(state.messages.get(c.id) || new Map()).values()].filter(
    (m) => kindOf(m, state.me) === 'theirs' && m.sender && m.sender.type === 'visitor' && m.content && !m.recalled,
  );
  const last = msgs.sort((a, b) => a.seq - b.seq).pop();
  if (!last) {
    box.hidden = true;
    return;
  }
  const key = `${c.id}:${last.seq}`;
  if (key === suggestFor) return;
  suggestFor = key;
  let data;
  try {
    data = await api('GET', '/api/v1/kbase/search?' + new URLSearchParams({ q: last.content.slice(0, 200), limit: '3' }));
  } catch (e) {
    box.hidden = true;
    return;
  }
  if (suggestFor !== key) return;
  const list = $('kb-suggest-list');
  list.replaceChildren();
  for (const r of data.results) {
    const item = document.createElement('div');
    item.className = 'kb-item';
    const title = document.createElement('div');
    title.className = 'kb-title';
    title.textContent = r.title;
    const snippet = document.createElement('div');
    snippet.className = 'kb-snippet';
    snippet.textContent = r.snippet;
    const use = document.createElement('button');
    use.type = 'button';
    use.className = 'btn btn-small';
    use.textContent = gettext('Use this answer');
    use.addEventListener('click', () => {
      appendToComposer(r.text);
    });
    item.append(title, snippet, use);
    list.append(item);
  }
  $('ai-draft').hidden = !config.ai_drafts;
  box.hidden = data.results.length === 0 && !config.ai_drafts;
}

// ---- AI draft reply (a worker streams it as assist.draft frames) --------------------------
let draftRequest = null;
$('ai-draft-btn').addEventListener('click', async () => {
  const c = selectedConversation();
  if (!c) return;
  const out = $('ai-draft-text');
  out.textContent = gettext('Writing a draft…');
  out.hidden = false;
  $('ai-draft-use').hidden = true;
  try {
    const data = await api('POST', '/api/v1/kefu/drafts', { conversation_id: c.id });
    draftRequest = data.request_id;
  } catch (err) {
    out.textContent = err.message;
  }
});

handle('assist.draft', (f) => {
  if (f.request_id !== draftRequest) return;
  const out = $('ai-draft-text');
  out.hidden = false;
  out.textContent = f.error || f.text || gettext('Writing a draft…');
  $('ai-draft-use').hidden = !(f.done && !f.error && f.text);
});

$('ai-draft-use').addEventListener('click', () => {
  appendToComposer($('ai-draft-text').textContent);
});

$('block-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const c = selectedConversation();
  if (!c || c.kind !== 'visitor') return;
  if (!confirm(gettext('Block this visitor and close the conversation?'))) return;
  const minutes = $('block-minutes').value;
  try {
    await api('POST', '/api/v1/kefu/blocks', {
      conversation_id: c.id,
      minutes: minutes ? Number(minutes) : null,
      by_ip: $('block-ip').checked,
      reason: $('block-reason').value.trim(),
    });
    $('block-reason').value = '';
    toast(gettext('The visitor is blocked.'));
  } catch (err) {
    toast(err.message);
  }
});

function renderVisitor() {
  const c = selectedConversation();
  const s = (c && c.session) || {};
  const v = s.visitor || {};
  $('visitor-none').hidden = !!c;
  $('visitor-details').hidden = !c;
  $('block-form').hidden = true;
  if (!c) {
    loadProfile(null);
    return;
  }
  $('v-name').textContent = v.name || c.title || '';
  const page = $('v-page');
  page.replaceChildren();
  if (v.page_url) {
    let url = null;
    try {
      url = new URL(v.page_url);
    } catch (e) { /* shown as text */ }
    // Only real web links become clickable; anything else (javascript:, data:) stays text.
    if (url && (url.protocol === 'http:' || url.protocol === 'https:')) {
      const a = document.createElement('a');
      a.href = url.href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.textContent = v.page_url;
      page.append(a);
    } else {
      page.textContent = v.page_url;
    }
  } else {
    page.textContent = '—';
  }
  $('v-language').textContent = v.language || '—';
  $('v-workgroup').textContent = (s.workgroup && s.workgroup.name) || '—';
  $('v-status').textContent = STATUS_TEXT[statusOf(c)] || statusOf(c);
  $('v-agent').textContent = (s.agent && s.agent.name) || '—';
  $('v-started').textContent = s.created_at ? fullTime(s.created_at) : '—';
  $('v-closed').textContent = s.closed_at ? fullTime(s.closed_at) : '—';
  const csat = s.csat && s.csat.score ? s.csat : null;
  $('v-csat').textContent = csat ? '★'.repeat(csat.score) + '☆'.repeat(5 - csat.score) + (csat.comment ? ` “${csat.comment}”` : '') : '—';
  $('block-form').hidden = !!c.closed;
  loadProfile(v.id);
  renderTransfer(c);
  suggestReplies();
}

// ---- visitor profile: device, tags, notes, trail, past conversations --------------------
let profileFor = null;
/** Read the visitor's profile again (after a merge or a change elsewhere). */
export function profileReload() {
  if (profileFor) loadProfile(profileFor, true);
}
async function loadProfile(visitorId, force = false) {
  const box = $('visitor-profile');
  if (!visitorId) {
    box.hidden = true;
    profileFor = null;
    return;
  }
  if (visitorId === profileFor && !force) return;
  profileFor = visitorId;
  let p;
  try {
    p = await api('GET', `/api/v1/kefu/visitors/${visitorId}`);
  } catch (e) {
    box.hidden = true;
    return;
  }
  if (profileFor !== visitorId) return;
  box.hidden = false;
  emit('profile', p); // the custom attributes and the contact merge (attributes.js)
  $('v-browser').textContent = [p.browser, p.os, p.device].filter(Boolean).join(' · ') || '—';
  $('v-ip').textContent = [p.ip_address, p.location && p.location.text].filter(Boolean).join(' · ') || '—';
  $('v-referrer').textContent = p.referrer || '—';
  const tags = $('v-tags');
  tags.replaceChildren();
  for (const name of p.tags) {
    const chip = document.createElement('span');
    chip.className = 'tag-chip';
    chip.textContent = name;
    const x = document.createElement('button');
    x.type = 'button';
    x.className = 'tag-remove';
    x.textContent = '×';
    x.setAttribute('aria-label', interpolate(gettext('Remove tag %(name)s'), { name }, true));
    x.addEventListener('click', async () => {
      try {
        await api('DELETE', `/api/v1/kefu/visitors/${visitorId}/tags/${encodeURIComponent(name)}`);
        loadProfile(visitorId, true);
      } catch (err) {
        toast(err.message);
      }
    });
    chip.append(x);
    tags.append(chip);
  }
  const notes = $('v-notes');
  notes.replaceChildren();
  for (const n of p.notes) {
    const li = document.createElement('li');
    li.textContent = n.text;
    const meta = document.createElement('span');
    meta.className = 'hint';
    meta.textContent = ` — ${n.author}, ${fullTime(n.created_at)}`;
    li.append(meta);
    notes.append(li);
  }
  const trail = $('v-trail');
  trail.replaceChildren();
  for (const t of p.trail) {
    const li = document.createElement('li');
    li.textContent = `${hhmm(t.at)} ${t.title || t.url}`;
    li.title = t.url;
    trail.append(li);
  }
  const past = $('v-past');
  past.replaceChildren();
  for (const c of p.conversations) {
    const li = document.createElement('li');
    const stars = c.csat ? ' ' + '★'.repeat(c.csat) : '';
    li.textContent = `${fullTime(c.created_at)} · ${c.agent || c.workgroup} · ${STATUS_TEXT[c.status] || c.status}${stars}`;
    past.append(li);
  }
}

$('tag-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('tag-name').value.trim();
  if (!name || !profileFor) return;
  try {
    await api('POST', `/api/v1/kefu/visitors/${profileFor}/tags`, { name });
    $('tag-name').value = '';
    loadProfile(profileFor, true);
  } catch (err) {
    toast(err.message);
  }
});

$('note-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('note-text').value.trim();
  if (!text || !profileFor) return;
  try {
    await api('POST', `/api/v1/kefu/visitors/${profileFor}/notes`, { text });
    $('note-text').value = '';
    loadProfile(profileFor, true);
  } catch (err) {
    toast(err.message);
  }
});


handle('visitor.updated', (f) => {
  if (f.visitor_id === profileFor) loadProfile(profileFor, true);
});

handle('csat.submitted', (f) => {
  const c = state.convs.get(f.conversation_id);
  if (c && c.session) c.session.csat = f.csat;
  if (f.conversation_id === state.selected) renderVisitor();
});

// The inbox's Tickets tab: views (mine, unassigned, SLA at risk…), the ticket with its SLA
// targets, replies and internal notes, bulk changes, merge, new tickets, and the notification
// bell. REST: docs/api.md §6; live: `ticket.updated` and `notification.new` frames.
import { api, formatSize } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { dayTime as when, relative } from '../weiyu/time.js';
import { config } from './store.js';

const SLA_TEXT = {
  ok: gettext('on track'),
  warning: gettext('due soon'),
  breached: gettext('overdue'),
  paused: gettext('paused'),
  met: gettext('met'),
};
const KIND_TEXT = {
  first_response: gettext('First response'),
  next_response: gettext('Next response'),
  resolution: gettext('Resolution'),
};

/** An ISO instant as the value of a datetime-local input (local wall time, minutes). */
function localInput(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fillSelect(select, options, value, empty) {
  select.replaceChildren();
  if (empty) select.append(new Option(empty, ''));
  for (const o of options) select.append(new Option(o.label ?? o.name, String(o.value ?? o.id)));
  select.value = value == null ? '' : String(value);
}

/**
 * `toast(text)` shows an error; `onActive(showing)` lets the inbox hide its conversation pane
 * while a ticket is on screen.
 */
export function setupTickets({ toast, onActive }) {
  let meta = null;
  let view = 'mine';
  let active = false;
  let selected = null; // ticket id
  let current = null; // the selected ticket's detail
  const chosen = new Set(); // ids ticked for bulk changes
  let listTimer = null;

  async function loadMeta() {
    if (!meta) meta = await api('GET', '/api/v1/tickets/meta');
    return meta;
  }

  // ---- list --------------------------------------------------------------------------------
  // Answers may come back out of order (a view change while a reload is in flight): only the
  // newest request is drawn. Rows whose ticket did not change are kept, not redrawn.
  let listSeq = 0;
  const rows = new Map(); // ticket id -> {sig, row}

  async function loadList() {
    const seq = ++listSeq;
    const params = new URLSearchParams({ view, limit: '100' });
    const q = $('ticket-search').value.trim();
    if (q) params.set('q', q);
    let data;
    try {
      data = await api('GET', '/api/v1/tickets?' + params);
    } catch (e) {
      if (seq === listSeq) toast(e.message);
      return;
    }
    if (seq !== listSeq) return;
    const listEl = $('ticket-list');
    const wanted = [];
    const seen = new Set();
    for (const t of data.tickets) {
      seen.add(t.id);
      const sig = JSON.stringify(t);
      const kept = rows.get(t.id);
      if (kept && kept.sig === sig) {
        kept.row.classList.toggle('selected', t.id === selected);
        kept.row.querySelector('input').checked = chosen.has(t.id);
        wanted.push(kept.row);
        continue;
      }
      const row = el('div', 'ticket-item');
      row.dataset.id = t.id;
      row.classList.toggle('selected', t.id === selected);
      const pick = el('input');
      pick.type = 'checkbox';
      pick.checked = chosen.has(t.id);
      pick.setAttribute('aria-label', interpolate(gettext('Select #%(n)s'), { n: t.number }, true));
      pick.addEventListener('change', () => {
        if (pick.checked) chosen.add(t.id);
        else chosen.delete(t.id);
        renderBulk();
      });
      const open = el('button', 'ticket-open');
      open.type = 'button';
      const top = el('span', 'ticket-top');
      top.append(el('span', 'ticket-number', '#' + t.number), el('span', 'ticket-title', t.subject));
      const bottom = el('span', 'ticket-sub');
      const status = meta ? meta.statuses.find((s) => s.value === t.status) : null;
      bottom.append(
        el('span', 'ticket-status-pill', status ? status.label : t.status),
        el('span', 'ticket-priority', meta ? (meta.priorities.find((p) => p.value === t.priority) || {}).label || t.priority : t.priority),
        el('span', 'ticket-who', (t.assignee && t.assignee.name) || gettext('unassigned')),
      );
      bottom.querySelector('.ticket-status-pill').dataset.status = t.status;
      bottom.querySelector('.ticket-priority').dataset.priority = t.priority;
      if (t.sla_state) {
        const badge = el('span', 'sla-dot', SLA_TEXT[t.sla_state] || t.sla_state);
        badge.dataset.state = t.sla_state;
        bottom.append(badge);
      }
      open.append(top, bottom);
      open.addEventListener('click', () => openTicket(t.id));
      row.append(pick, open);
      rows.set(t.id, { sig, row });
      wanted.push(row);
    }
    for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
    const same = wanted.length === listEl.children.length
      && wanted.every((row, i) => listEl.children[i] === row);
    if (!same) listEl.replaceChildren(...wanted);
    $('ticket-list-empty').hidden = data.tickets.length > 0;
  }

  function reloadListSoon() {
    clearTimeout(listTimer);
    listTimer = setTimeout(loadList, 250);
  }

  function renderBulk() {
    $('bulk-bar').hidden = chosen.size === 0;
    $('bulk-count').textContent = interpolate(gettext('%(n)s selected'), { n: chosen.size }, true);
  }

  $('ticket-view-select').addEventListener('change', (e) => {
    view = e.target.value;
    loadList();
  });
  $('ticket-search').addEventListener('input', reloadListSoon);
  $('bulk-action').addEventListener('change', async (e) => {
    const action = e.target.value;
    e.target.value = '';
    if (!action || !chosen.size) return;
    const changes = {};
    if (action === 'assign_me') changes.assignee_id = config.user.id;
    else {
      const [field, value] = action.split(':');
      changes[field] = value;
    }
    try {
      const result = await api('POST', '/api/v1/tickets/bulk', { ticket_ids: [...chosen], changes });
      if (result.failed.length) {
        toast(result.failed.map((f) => `#${f.id}: ${f.detail}`).join('; '));
      }
    } catch (err) {
      toast(err.message);
    }
    chosen.clear();
    renderBulk();
    loadList();
    if (selected) openTicket(selected);
  });

  // ---- one ticket --------------------------------------------------------------------------
  async function openTicket(id) {
    selected = id;
    await loadMeta();
    let t;
    try {
      t = await api('GET', `/api/v1/tickets/${id}`);
    } catch (e) {
      toast(e.message);
      return;
    }
    current = t;
    showView(true);
    renderTicket(t);
    for (const row of document.querySelectorAll('.ticket-item')) {
      row.classList.toggle('selected', Number(row.dataset.id) === id);
    }
  }

  function showView(on) {
    $('ticket-view').hidden = !on;
    onActive(on);
  }

  function renderTicket(t) {
    $('ticket-heading').textContent = `#${t.number} ${t.subject}`;
    const badge = $('ticket-sla-badge');
    badge.textContent = t.sla_state ? SLA_TEXT[t.sla_state] : '';
    badge.dataset.state = t.sla_state || '';
    const done = t.status === 'closed' || t.status === 'merged';
    fillSelect($('t-status'), meta.statuses, t.status);
    fillSelect($('t-priority'), meta.priorities, t.priority);
    fillSelect($('t-assignee'), meta.agents, t.assignee && t.assignee.id, gettext('— nobody —'));
    fillSelect($('t-workgroup'), meta.workgroups, t.workgroup && t.workgroup.id, gettext('— none —'));
    fillSelect($('t-category'), meta.categories, t.category && t.category.id, gettext('— none —'));
    $('t-due').value = t.due_at ? localInput(t.due_at) : '';
    $('t-tags').value = t.tags.join(', ');
    const watching = t.watchers.some((w) => w.id === config.user.id);
    $('watch-btn').setAttribute('aria-pressed', String(watching));
    $('watch-btn').textContent = watching ? gettext('Stop watching') : gettext('Watch');
    for (const f of $('ticket-fields').elements) f.disabled = done;
    const who = t.requester.type === 'visitor'
      ? interpolate(gettext('Requester: %(name)s (website visitor)'), { name: t.requester.name }, true)
      : interpolate(gettext('Requester: %(name)s'), { name: t.requester.name || t.requester_email || '—' }, true);
    $('ticket-requester').textContent = who + (t.merged_into ? ' · ' + gettext('merged') : '');
    const clocks = $('sla-clocks');
    clocks.replaceChildren();
    for (const c of t.sla) {
      const li = el('li', 'sla-clock');
      li.dataset.state = c.state;
      li.dataset.kind = c.kind;
      let detail = SLA_TEXT[c.state] || c.state;
      if (c.state === 'met') detail += ' ' + when(c.met_at);
      else if (c.due_at) detail += ' · ' + interpolate(gettext('due %(when)s'), { when: relative(c.due_at) }, true);
      li.append(el('span', 'sla-kind', KIND_TEXT[c.kind] || c.kind), el('span', 'sla-detail', detail));
      if (c.due_at) li.title = when(c.due_at);
      clocks.append(li);
    }
    clocks.hidden = !t.sla.length;
    const list = $('ticket-comments');
    list.replaceChildren();
    for (const c of t.comments) {
      const li = el('li', 'comment ' + (c.public ? 'public' : 'internal') + ' ' + c.author.type);
      const head = el('div', 'comment-meta');
      head.append(
        el('span', 'comment-author', c.author.type === 'system' ? gettext('System') : c.author.name),
        el('span', 'comment-kind', c.public ? gettext('public reply') : gettext('internal note')),
        el('time', 'comment-time', when(c.created_at)),
      );
      li.append(head, el('div', 'comment-body', c.body));
      if (c.author.type !== 'system' && !done) {
        const split = el('button', 'link-btn comment-split', gettext('Split into a new ticket'));
        split.type = 'button';
        split.addEventListener('click', async () => {
          try {
            const created = await api('POST', `/api/v1/tickets/comments/${c.id}/split`, {});
            await openTicket(created.id);
            reloadListSoon();
          } catch (err) {
            toast(err.message);
          }
        });
        head.append(split);
      }
      if (c.attachments && c.attachments.length) {
        const files = el('div', 'comment-files');
        for (const a of c.attachments) {
          const link = el('a', 'file-card');
          link.href = a.url;
          link.target = '_blank';
          link.rel = 'noopener';
          if (a.thumbnail_url) {
            const img = el('img', 'comment-thumb');
            img.src = a.thumbnail_url;
            img.alt = a.name;
            link.append(img);
          }
          link.append(el('span', 'file-name', a.name), el('span', 'file-size', formatSize(a.size)));
          files.append(link);
        }
        li.append(files);
      }
      list.append(li);
    }
    fillSelect(
      $('ticket-reply-status'),
      meta.statuses.filter((s) => !['new', 'merged', 'closed'].includes(s.value)),
      t.status === 'new' ? 'open' : t.status,
    );
    $('ticket-reply-form').hidden = done;
  }

  async function patch(changes) {
    if (!current) return;
    try {
      renderTicket((current = await api('PATCH', `/api/v1/tickets/${current.id}`, changes)));
    } catch (e) {
      toast(e.message);
      renderTicket(current);
    }
    reloadListSoon();
  }

  $('t-status').addEventListener('change', (e) => patch({ status: e.target.value }));
  $('t-priority').addEventListener('change', (e) => patch({ priority: e.target.value }));
  $('t-assignee').addEventListener('change', (e) => patch({ assignee_id: e.target.value ? Number(e.target.value) : null }));
  $('t-workgroup').addEventListener('change', (e) => patch({ workgroup_id: e.target.value ? Number(e.target.value) : null }));
  $('t-tags').addEventListener('change', (e) => patch({ tags: e.target.value.split(',').map((s) => s.trim()).filter(Boolean) }));
  $('t-category').addEventListener('change', (e) => patch({ category_id: e.target.value ? Number(e.target.value) : null }));
  $('t-due').addEventListener('change', (e) => patch({ due_at: e.target.value ? new Date(e.target.value).toISOString() : null }));
  $('watch-btn').addEventListener('click', async () => {
    if (!current) return;
    const watching = $('watch-btn').getAttribute('aria-pressed') !== 'true';
    try {
      renderTicket((current = await api('POST', `/api/v1/tickets/${current.id}/watch`, { watching })));
    } catch (e) {
      toast(e.message);
    }
  });
  $('ticket-fields').addEventListener('submit', (e) => e.preventDefault());

  const attachInput = $('ticket-attach');
  $('ticket-attach-btn').addEventListener('click', () => attachInput.click());
  attachInput.addEventListener('change', () => {
    $('ticket-files').textContent = [...attachInput.files].map((f) => f.name).join(', ');
  });

  /** Upload the chosen files to the ticket; resolves with their ids. */
  async function uploadFiles(ticketId) {
    const ids = [];
    for (const file of attachInput.files) {
      const form = new FormData();
      form.append('file', file, file.name);
      form.append('kind', /^image\/(png|jpeg|gif|webp)$/.test(file.type) ? 'image' : 'file');
      const a = await api('POST', `/api/v1/tickets/${ticketId}/attachments`, form);
      ids.push(a.id);
    }
    return ids;
  }

  $('ticket-reply-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = $('ticket-reply').value.trim();
    if (!current || !body) return;
    const pub = document.querySelector('input[name="reply-kind"]:checked').value === 'public';
    const send = $('ticket-reply-send');
    send.disabled = true;
    try {
      const attachmentIds = await uploadFiles(current.id);
      // "@Name" of a colleague notifies them (a ticket's notes are where agents ask each other)
      const mentions = meta.agents.filter((a) => body.includes('@' + a.name)).map((a) => a.id);
      await api('POST', `/api/v1/tickets/${current.id}/comments`, {
        body,
        public: pub,
        attachment_ids: attachmentIds,
        mentions,
      });
      $('ticket-reply').value = '';
      attachInput.value = '';
      $('ticket-files').textContent = '';
      const wanted = $('ticket-reply-status').value;
      const id = current.id;
      current = await api('GET', `/api/v1/tickets/${id}`);
      if (wanted && wanted !== current.status) await patch({ status: wanted });
      else renderTicket(current);
    } catch (err) {
      toast(err.message);
    } finally {
      send.disabled = false;
    }
    reloadListSoon();
  });

  $('merge-btn').addEventListener('click', async () => {
    const number = Number($('merge-into').value.replace('#', ''));
    if (!current || !number) return;
    let target;
    try {
      const found = await api('GET', '/api/v1/tickets?' + new URLSearchParams({ q: '#' + number, limit: '5' }));
      target = found.tickets.find((t) => t.number === number);
      if (!target) throw new Error(interpolate(gettext('There is no ticket #%(n)s.'), { n: number }, true));
      if (!confirm(interpolate(gettext('Merge #%(a)s into #%(b)s? #%(a)s will be closed.'), { a: current.number, b: number }, true))) return;
      current = await api('POST', `/api/v1/tickets/${current.id}/merge`, { into_id: target.id });
      selected = current.id;
      renderTicket(current);
      $('merge-into').value = '';
    } catch (err) {
      toast(err.message);
    }
    reloadListSoon();
  });

  $('ticket-back').addEventListener('click', () => {
    selected = null;
    current = null;
    showView(false);
    document.getElementById('app').classList.remove('show-conv');
  });

  // ---- new tickets ---------------------------------------------------------------------------
  let fromConversation = null;
  async function openNewTicket({ conversationId = null, subject = '' } = {}) {
    await loadMeta();
    fromConversation = conversationId;
    $('new-ticket-form').reset();
    $('nt-subject').value = subject;
    $('nt-error').textContent = '';
    fillSelect($('nt-priority'), meta.priorities, 'normal');
    fillSelect($('nt-workgroup'), meta.workgroups, null, gettext('— none —'));
    fillSelect($('nt-assignee'), meta.agents, config.user.id, gettext('— nobody —'));
    fillSelect($('nt-category'), meta.categories, null, gettext('— none —'));
    $('ticket-dialog').showModal();
    $('nt-subject').focus();
  }

  $('new-ticket').addEventListener('click', () => openNewTicket());
  $('nt-cancel').addEventListener('click', () => $('ticket-dialog').close());
  $('new-ticket-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {
      subject: $('nt-subject').value.trim(),
      body: $('nt-body').value.trim(),
      priority: $('nt-priority').value,
      workgroup_id: $('nt-workgroup').value ? Number($('nt-workgroup').value) : null,
      assignee_id: $('nt-assignee').value ? Number($('nt-assignee').value) : null,
      category_id: $('nt-category').value ? Number($('nt-category').value) : null,
    };
    if (fromConversation) body.conversation_id = fromConversation;
    try {
      const t = await api('POST', '/api/v1/tickets', body);
      $('ticket-dialog').close();
      document.getElementById('tab-tickets').click();
      await openTicket(t.id);
      loadList();
    } catch (err) {
      $('nt-error').textContent = err.message;
    }
  });

  // ---- notifications -------------------------------------------------------------------------
  let unread = 0;
  function renderCount() {
    const count = $('notif-count');
    count.textContent = unread > 99 ? '99+' : String(unread);
    count.hidden = unread === 0;
    const tabBadge = $('tab-tickets').querySelector('.tab-unread');
    tabBadge.textContent = count.textContent;
    tabBadge.hidden = unread === 0;
  }

  function notificationItem(n) {
    const b = el('button', 'notif-item' + (n.read_at ? '' : ' unread'));
    b.type = 'button';
    b.dataset.kind = n.kind;
    b.append(el('span', 'notif-text', n.text), el('time', 'notif-time', when(n.created_at)));
    b.addEventListener('click', async () => {
      $('notif-panel').hidden = true;
      $('notif-btn').setAttribute('aria-expanded', 'false');
      if (!n.read_at) {
        api('POST', '/api/v1/tickets/notifications/read', { ids: [n.id] }).catch(() => {});
        n.read_at = new Date().toISOString();
        unread = Math.max(0, unread - 1);
        renderCount();
      }
      if (n.ticket) {
        document.getElementById('tab-tickets').click();
        openTicket(n.ticket.id);
      }
    });
    return b;
  }

  async function loadNotifications() {
    try {
      const data = await api('GET', '/api/v1/tickets/notifications?limit=30');
      unread = data.unread;
      $('notif-list').replaceChildren(...data.notifications.map(notificationItem));
      if (!data.notifications.length) $('notif-list').append(el('p', 'pane-empty', gettext('Nothing new.')));
      renderCount();
    } catch (e) { /* the bell keeps its count */ }
  }

  $('notif-btn').addEventListener('click', () => {
    const panel = $('notif-panel');
    panel.hidden = !panel.hidden;
    $('notif-btn').setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) loadNotifications();
  });
  $('notif-read-all').addEventListener('click', async () => {
    try {
      await api('POST', '/api/v1/tickets/notifications/read', {});
    } catch (e) {
      toast(e.message);
    }
    loadNotifications();
  });

  loadNotifications();

  return {
    /** The Tickets tab was chosen (true) or left (false). */
    setActive(on) {
      active = on;
      if (on) {
        loadMeta().then(loadList).catch((e) => toast(e.message));
        if (current) showView(true);
      } else {
        $('ticket-view').hidden = true;
      }
    },
    openNewTicket,
    /** Frames from /ws/agent/ that concern tickets. */
    onFrame(f) {
      if (f.type === 'notification.new') {
        unread += 1;
        renderCount();
        if (!$('notif-panel').hidden) loadNotifications();
        if (document.visibilityState !== 'visible' && 'Notification' in window && Notification.permission === 'granted') {
          try {
            new Notification(gettext('Weiyu'), { body: f.notification.text, tag: 'n' + f.notification.id });
          } catch (e) { /* not allowed here */ }
        }
      } else if (f.type === 'ticket.updated') {
        if (active) reloadListSoon();
        if (current && f.ticket && f.ticket.id === current.id && active) openTicket(current.id);
      }
    },
  };
}

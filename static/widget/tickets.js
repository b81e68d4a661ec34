// The widget's "Your messages" panel: leave a message when nobody is online (it becomes a
// ticket), and follow the replies to one's tickets (docs/api.md §6, widget endpoints).
// Everything from the server goes into the DOM as text.
import { api } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { dayTime as when } from '../weiyu/time.js';

const STATUS = {
  new: gettext('received'),
  open: gettext('in progress'),
  pending: gettext('waiting for you'),
  on_hold: gettext('in progress'),
  solved: gettext('solved'),
  closed: gettext('closed'),
  merged: gettext('merged'),
};

/**
 * Wire the panel. `getToken()` gives the visitor's token (null before the session exists),
 * `getFilesToken()` the short-lived token of its file links (`?ft=`),
 * `url` the widget tickets endpoint, `onOpen(open)` tells the chat to hide or show itself.
 */
export function setupTickets({ url, getToken, getFilesToken, onOpen }) {
  const panel = $('tickets-panel');
  const button = $('tickets-btn');
  const badge = $('tickets-badge');
  const listEl = $('ticket-list');
  const form = $('leave-form');
  let tickets = [];
  let seen = new Map(); // ticket id -> number of comments the visitor has seen
  let openTicket = null;

  const call = (method, path, body) => api(method, path, body && { ...body, token: getToken() });

  function unreadCount() {
    let n = 0;
    for (const t of tickets) {
      const replies = t.comments.filter((c) => !c.mine).length;
      if (replies > (seen.get(t.id) || 0)) n++;
    }
    return n;
  }

  function renderBadge() {
    const n = unreadCount();
    badge.textContent = String(n);
    badge.hidden = n === 0;
  }

  function renderList() {
    listEl.replaceChildren();
    $('tickets-empty').hidden = tickets.length > 0 || !form.hidden;
    for (const t of tickets) {
      const card = el('article', 'ticket-card');
      card.dataset.id = t.id;
      const head = el('button', 'ticket-head');
      head.type = 'button';
      head.append(
        el('span', 'ticket-subject', `#${t.number} ${t.subject}`),
        el('span', 'ticket-status', STATUS[t.status] || t.status),
      );
      head.dataset.status = t.status;
      head.setAttribute('aria-expanded', String(openTicket === t.id));
      head.addEventListener('click', () => {
        openTicket = openTicket === t.id ? null : t.id;
        renderList();
      });
      card.append(head);
      if (openTicket === t.id) {
        seen.set(t.id, t.comments.filter((c) => !c.mine).length);
        const thread = el('div', 'ticket-thread');
        for (const c of t.comments) {
          const item = el('div', 'ticket-comment ' + (c.mine ? 'mine' : 'theirs'));
          item.append(el('div', 'ticket-meta', `${c.mine ? gettext('You') : c.author.name} · ${when(c.created_at)}`));
          item.append(el('div', 'ticket-body', c.body));
          for (const a of c.attachments || []) {
            const link = el('a', 'ticket-file', a.name);
            link.href = `${a.url}?ft=${encodeURIComponent(getFilesToken())}`;
            link.target = '_blank';
            link.rel = 'noopener';
            item.append(link);
          }
          thread.append(item);
        }
        card.append(thread);
        if (!['closed', 'merged'].includes(t.status)) {
          const reply = el('form', 'ticket-reply');
          const box = el('textarea');
          box.rows = 2;
          box.maxLength = 20000;
          box.required = true;
          box.setAttribute('aria-label', gettext('Your reply'));
          box.placeholder = gettext('Write a reply…');
          const send = el('button', 'primary-btn', gettext('Reply'));
          send.type = 'submit';
          const error = el('p', 'form-error');
          reply.append(box, send, error);
          reply.addEventListener('submit', async (e) => {
            e.preventDefault();
            if (!box.value.trim()) return;
            send.disabled = true;
            try {
              const updated = await call('POST', `${url}/${t.id}/comments`, { body: box.value });
              tickets = tickets.map((x) => (x.id === updated.id ? updated : x));
              renderList();
            } catch (err) {
              error.textContent = err.message;
              send.disabled = false;
            }
          });
          card.append(reply);
        }
      }
      listEl.append(card);
    }
    renderBadge();
  }

  let refreshSeq = 0; // answers may arrive out of order: only the newest is drawn
  async function refresh() {
    if (!getToken()) return;
    const seq = ++refreshSeq;
    try {
      const data = await api('GET', url, undefined, { 'X-Visitor-Token': getToken() });
      if (seq !== refreshSeq) return;
      tickets = data.tickets;
      if (!seen.size && panel.hidden) {
        // first load: what was there before this page was opened counts as seen
        seen = new Map(tickets.map((t) => [t.id, t.comments.filter((c) => !c.mine).length]));
      }
      renderList();
    } catch (e) { /* the panel keeps what it had */ }
  }

  function show(open, { leave = false } = {}) {
    panel.hidden = !open;
    button.setAttribute('aria-pressed', String(open));
    onOpen(open);
    if (open) {
      form.hidden = !leave;
      if (leave) $('leave-body').focus();
      refresh();
    }
  }

  button.addEventListener('click', () => show(panel.hidden));
  $('back-to-chat').addEventListener('click', () => show(false));
  $('new-message').addEventListener('click', () => {
    form.hidden = !form.hidden;
    $('tickets-empty').hidden = true;
    if (!form.hidden) $('leave-body').focus();
  });
  $('offline-leave').addEventListener('click', () => show(true, { leave: true }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const sendBtn = $('leave-send');
    sendBtn.disabled = true;
    $('leave-error').textContent = '';
    try {
      const t = await call('POST', url, {
        body: $('leave-body').value,
        name: $('leave-name').value.trim(),
        email: $('leave-email').value.trim(),
      });
      form.reset();
      form.hidden = true;
      tickets = [t, ...tickets.filter((x) => x.id !== t.id)];
      openTicket = t.id;
      renderList();
      const note = el('p', 'hint sent-note', interpolate(gettext('Thank you. Your message is #%(number)s; replies appear here.'), { number: t.number }, true));
      listEl.prepend(note);
    } catch (err) {
      $('leave-error').textContent = err.message;
    } finally {
      sendBtn.disabled = false;
    }
  });

  return {
    refresh,
    show,
    /** A ticket.updated event for this visitor: fetch the news. */
    onEvent: () => refresh(),
  };
}

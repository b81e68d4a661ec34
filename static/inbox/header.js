// The selected conversation's header: title and state, the group announcement, and its actions
// (close, create a ticket, pin, do-not-disturb, archive).
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { client } from './connection.js';
import { dropConversation, showConversation, ticketsUi } from './conversations.js';
import { toast } from './notifications.js';
import { STATUS_TEXT, on, selectedConversation, state, statusOf, titleOf } from './store.js';

const closeBtn = $('close-conv');
const CHANNEL_TEXT = {
  telegram: gettext('via Telegram'),
  wechat_mp: gettext('via WeChat'),
  api: gettext('via the API'),
  email: gettext('via e-mail'),
};

function renderHeader() {
  const c = selectedConversation();
  if (!c) return;
  $('conv-heading').textContent = titleOf(c);
  const st = $('conv-heading-status');
  if (c.kind === 'visitor') st.textContent = STATUS_TEXT[statusOf(c)] || statusOf(c);
  else if (c.kind === 'group') {
    st.textContent = c.closed
      ? gettext('dissolved')
      : interpolate(gettext('%(n)s members'), { n: c.member_count || 0 }, true);
  } else st.textContent = '';
  st.dataset.status = c.kind === 'visitor' ? statusOf(c) : c.kind;
  st.hidden = !st.textContent;
  // where the customer is, when not on the website (docs/channels.md)
  const kind = c.session && c.session.channel && c.session.channel.kind;
  const where = $('conv-heading-channel');
  where.textContent = CHANNEL_TEXT[kind] || '';
  where.dataset.kind = kind || '';
  where.hidden = !where.textContent;
  closeBtn.hidden = c.kind !== 'visitor';
  $('make-ticket').hidden = c.kind !== 'visitor';
  closeBtn.disabled = !!c.closed;
  for (const [btn, pressed] of [['pin-btn', c.pinned], ['dnd-btn', c.notifications_off], ['archive-btn', c.archived]]) {
    $(btn).setAttribute('aria-pressed', String(!!pressed));
  }
  const ann = $('announcement');
  const text = c.group && c.group.announcement;
  ann.hidden = !text;
  ann.textContent = text ? interpolate(gettext('Announcement: %(text)s'), { text }, true) : '';
}
on('header', renderHeader);

$('make-ticket').addEventListener('click', () => {
  const c = selectedConversation();
  if (c) ticketsUi.openNewTicket({ conversationId: c.id, subject: titleOf(c) });
});

closeBtn.addEventListener('click', () => {
  const id = state.selected;
  if (id == null) return;
  closeBtn.disabled = true;
  client.closeConversation(id).catch((e) => {
    if (e.code === 'not_found') dropConversation(id);
    else toast(e.message && e.code !== 'disconnected' ? e.message : gettext('Could not close the conversation. Try again.'));
    const c = state.convs.get(id);
    if (id === state.selected && c && !c.closed) closeBtn.disabled = false;
  });
});

// ---- conversation settings: pin, do-not-disturb, archive ---------------------------------
async function changeSettings(body) {
  const id = state.selected;
  try {
    showConversation(await api('PATCH', `/api/v1/im/conversations/${id}/settings`, body));
  } catch (e) {
    toast(e.message);
  }
}

$('pin-btn').addEventListener('click', () => changeSettings({ pinned: !selectedConversation().pinned }));
$('dnd-btn').addEventListener('click', () => changeSettings({ notifications_off: !selectedConversation().notifications_off }));
$('archive-btn').addEventListener('click', () => changeSettings({ archived: !selectedConversation().archived }));

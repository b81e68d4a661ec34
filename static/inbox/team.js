// The team side of the inbox: new 1:1 chats and groups, the people picker, the colleague of a
// 1:1 chat and the group panel (settings, members, roles, mutes) in the side panel.
import { api, upload } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { fullTime } from '../weiyu/time.js';
import { dropConversation, refreshConversation, select } from './conversations.js';
import { toast } from './notifications.js';
import { config, emit, isStaff, on, putConversation, selectedConversation, state, titleOf } from './store.js';

on('side', (reload) => {
  const c = selectedConversation();
  const kind = c ? c.kind : null;
  $('peer-panel').hidden = kind !== 'direct';
  $('group-panel').hidden = kind !== 'group';
  if (kind === 'direct') $('peer-names').textContent = titleOf(c);
  else if (kind === 'group') renderGroup(c, reload);
});

/** The selected group's members (fetched once per selection). */
export async function groupMembersOf(c) {
  if (!state.groupMembers) {
    const data = await api('GET', `/api/v1/im/groups/${c.id}/members`);
    state.groupMembers = data.members;
    for (const gm of state.groupMembers) state.names.set(gm.member.key, gm.member.name);
  }
  return state.groupMembers;
}

// ---- new chats and groups -----------------------------------------------------------------
function openConversation(c) {
  putConversation(c);
  emit('list');
  select(c.id);
}

$('new-chat').addEventListener('click', async () => {
  const [person] = await pickPeople({ title: gettext('Chat with a colleague'), multiple: false, exclude: new Set([state.me]) });
  if (!person) return;
  try {
    openConversation(await api('POST', '/api/v1/im/conversations/direct', { user_id: person.id }));
  } catch (e) {
    toast(e.message);
  }
});

let newGroupPeople = [];
$('new-group').addEventListener('click', () => {
  newGroupPeople = [];
  $('new-group-form').reset();
  $('ng-members').textContent = '';
  $('ng-error').textContent = '';
  $('group-dialog').showModal();
  $('ng-title').focus();
});
$('ng-cancel').addEventListener('click', () => $('group-dialog').close());
$('ng-pick').addEventListener('click', async () => {
  const chosen = await pickPeople({
    title: gettext('Choose members'),
    multiple: true,
    exclude: new Set([state.me]),
    confirmText: gettext('Add'),
  });
  if (chosen.length) newGroupPeople = chosen;
  $('ng-members').textContent = newGroupPeople.map((u) => u.name).join(', ');
});
$('new-group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('ng-create').disabled = true;
  try {
    const c = await api('POST', '/api/v1/im/groups', {
      title: $('ng-title').value.trim(),
      category: $('ng-category').value.trim(),
      announcement: $('ng-announcement').value.trim(),
      member_ids: newGroupPeople.map((u) => u.id),
    });
    $('group-dialog').close();
    openConversation(c);
  } catch (err) {
    $('ng-error').textContent = err.message;
  } finally {
    $('ng-create').disabled = false;
  }
});

// ---- group panel --------------------------------------------------------------------------
const ROLE_TEXT = { owner: gettext('owner'), admin: gettext('admin'), member: gettext('member') };
const MUTE_CHOICES = [
  [10, gettext('Mute 10 minutes')],
  [60, gettext('Mute 1 hour')],
  [24 * 60, gettext('Mute 1 day')],
];

function renderGroup(c, reload) {
  const mine = c.role;
  const editable = isStaff(mine) && !c.closed;
  const g = c.group || {};
  if (reload || document.activeElement === document.body || !$('group-form').contains(document.activeElement)) {
    $('g-title').value = c.title || '';
    $('g-category').value = g.category || '';
    $('g-announcement').value = g.announcement || '';
    $('g-all-muted').checked = !!g.all_muted;
  }
  for (const id of ['g-title', 'g-category', 'g-announcement', 'g-all-muted', 'g-avatar', 'g-save']) $(id).disabled = !editable;
  $('g-save').hidden = !editable;
  $('g-count').textContent = interpolate(gettext('%(n)s members'), { n: c.member_count || 0 }, true);
  $('g-invite').hidden = !editable;
  $('g-leave').hidden = mine === 'owner' || !!c.closed;
  $('g-dissolve').hidden = mine !== 'owner' || !!c.closed;
  if (reload || !state.groupMembers) {
    state.groupMembers = null;
    groupMembersOf(c)
      .then(() => {
        if (c.id !== state.selected) return;
        renderMembers(c);
        emit('members'); // @mentions shown before the names were known get their highlight now
      })
      .catch((e) => toast(e.message));
  } else {
    renderMembers(c);
  }
}

function memberButton(text, onClick, cls = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'link-btn ' + cls;
  b.textContent = text;
  b.addEventListener('click', onClick);
  return b;
}

async function memberAction(c, userId, method, body) {
  try {
    await api(method, `/api/v1/im/groups/${c.id}/members/${userId}`, body);
  } catch (e) {
    toast(e.message);
  }
  if (c.id === state.selected) renderGroup(c, true);
}

function renderMembers(c) {
  const ul = $('g-members');
  ul.replaceChildren();
  const mine = c.role;
  for (const gm of state.groupMembers || []) {
    const li = document.createElement('li');
    li.className = 'member';
    li.dataset.key = gm.member.key;
    const name = document.createElement('span');
    name.className = 'member-name';
    name.textContent = gm.member.name + (gm.member.key === state.me ? ' ' + gettext('(you)') : '');
    const role = document.createElement('span');
    role.className = 'member-role';
    role.dataset.role = gm.role;
    role.textContent = gm.role === 'member' ? '' : ROLE_TEXT[gm.role];
    li.append(name, role);
    const muted = gm.muted_until && Date.parse(gm.muted_until) > Date.now();
    if (muted) {
      const m = document.createElement('span');
      m.className = 'member-muted';
      m.textContent = '🔇';
      m.title = interpolate(gettext('Muted until %(time)s'), { time: fullTime(gm.muted_until) }, true);
      li.append(m);
    }
    const actions = document.createElement('span');
    actions.className = 'member-actions';
    const userId = gm.member.id;
    const other = gm.member.key !== state.me && !c.closed;
    if (other && mine === 'owner') {
      actions.append(gm.role === 'admin'
        ? memberButton(gettext('Remove admin'), () => memberAction(c, userId, 'PATCH', { role: 'member' }))
        : memberButton(gettext('Make admin'), () => memberAction(c, userId, 'PATCH', { role: 'admin' })));
      actions.append(memberButton(gettext('Make owner'), async () => {
        if (!confirm(interpolate(gettext('Make %(name)s the owner of this group?'), { name: gm.member.name }, true))) return;
        try {
          putConversation(await api('POST', `/api/v1/im/groups/${c.id}/owner`, { user_id: userId }));
        } catch (e) {
          toast(e.message);
        }
        refreshConversation(c.id);
      }));
    }
    const canManage = other && (mine === 'owner' || (mine === 'admin' && gm.role === 'member'));
    if (canManage) {
      if (muted) {
        actions.append(memberButton(gettext('Unmute'), () => memberAction(c, userId, 'PATCH', { muted_minutes: 0 })));
      } else {
        const sel = document.createElement('select');
        sel.className = 'member-mute';
        sel.setAttribute('aria-label', gettext('Mute'));
        const first = new Option(gettext('Mute…'), '');
        sel.append(first, ...MUTE_CHOICES.map(([min, label]) => new Option(label, String(min))));
        sel.addEventListener('change', () => sel.value && memberAction(c, userId, 'PATCH', { muted_minutes: Number(sel.value) }));
        actions.append(sel);
      }
      actions.append(memberButton(gettext('Remove'), () => {
        if (confirm(interpolate(gettext('Remove %(name)s from the group?'), { name: gm.member.name }, true))) {
          memberAction(c, userId, 'DELETE');
        }
      }, 'danger'));
    }
    li.append(actions);
    ul.append(li);
  }
}

$('group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const c = selectedConversation();
  if (!c) return;
  const body = {
    title: $('g-title').value.trim(),
    category: $('g-category').value.trim(),
    announcement: $('g-announcement').value.trim(),
    all_muted: $('g-all-muted').checked,
  };
  const file = $('g-avatar').files[0];
  try {
    if (file) body.avatar_id = (await upload(file, { kind: 'image' })).id;
    putConversation(await api('PATCH', `/api/v1/im/groups/${c.id}`, body));
    $('g-avatar').value = '';
    toast(gettext('Saved.'));
  } catch (err) {
    toast(err.message);
  }
  emit('list');
  if (c.id === state.selected) emit('header');
});

$('g-invite').addEventListener('click', async () => {
  const c = selectedConversation();
  if (!c) return;
  const members = await groupMembersOf(c);
  const chosen = await pickPeople({
    title: gettext('Invite people'),
    multiple: true,
    exclude: new Set(members.map((gm) => gm.member.key)),
    confirmText: gettext('Invite'),
  });
  if (!chosen.length) return;
  try {
    await api('POST', `/api/v1/im/groups/${c.id}/members`, { user_ids: chosen.map((u) => u.id) });
  } catch (e) {
    toast(e.message);
  }
  refreshConversation(c.id);
});

$('g-leave').addEventListener('click', async () => {
  const c = selectedConversation();
  if (!c || !confirm(gettext('Leave this group?'))) return;
  try {
    await api('DELETE', `/api/v1/im/groups/${c.id}/members/${config.user.id}`);
    dropConversation(c.id);
  } catch (e) {
    toast(e.message);
  }
});

$('g-dissolve').addEventListener('click', async () => {
  const c = selectedConversation();
  if (!c || !confirm(gettext('Dissolve this group for everyone? Its history stays readable.'))) return;
  try {
    await api('DELETE', `/api/v1/im/groups/${c.id}`);
  } catch (e) {
    toast(e.message);
  }
});

// ---- people picker -----------------------------------------------------------------------
/**
 * Show the directory and let the user pick people. `multiple`: checkboxes; resolves with the
 * chosen users ([] on cancel). `exclude`: keys not offered.
 */
export function pickPeople({ title, multiple, exclude = new Set(), confirmText }) {
  const dlg = document.getElementById('people-dialog');
  const list = dlg.querySelector('.people-list');
  const tree = dlg.querySelector('.dept-tree');
  const search = dlg.querySelector('.people-search');
  const ok = dlg.querySelector('.people-ok');
  dlg.querySelector('.dialog-title').textContent = title;
  ok.textContent = confirmText || gettext('OK');
  ok.hidden = !multiple;
  search.value = '';
  // rows left from the previous picker belong to its choices (and its finish): never clickable here
  list.replaceChildren();
  let department = null;
  const chosen = new Map();

  let peopleSeq = 0; // answers may arrive out of order while typing: only the newest is drawn
  async function loadPeople() {
    const seq = ++peopleSeq;
    const params = new URLSearchParams({ limit: '100' });
    if (search.value.trim()) params.set('q', search.value.trim());
    if (department) params.set('department', department);
    let data;
    try {
      data = await api('GET', '/api/v1/org/directory?' + params);
    } catch (e) {
      if (seq === peopleSeq) list.replaceChildren(el('p', 'pane-empty', e.message));
      return;
    }
    if (seq !== peopleSeq) return;
    list.replaceChildren();
    for (const u of data.users) {
      if (exclude.has(u.key)) continue;
      const row = el('label', 'person');
      const pick = el('input');
      pick.type = multiple ? 'checkbox' : 'radio';
      pick.name = 'person';
      pick.value = u.id;
      pick.checked = chosen.has(u.id);
      pick.addEventListener('change', () => {
        if (pick.checked) chosen.set(u.id, u);
        else chosen.delete(u.id);
        if (!multiple) finish([u]);
      });
      const who = el('span', 'person-name', u.name);
      const what = el('span', 'person-title', [u.title, ...(u.departments || []).map((d) => d.name)].filter(Boolean).join(' · '));
      row.append(pick, who, what);
      list.append(row);
    }
    if (!list.children.length) list.append(el('p', 'pane-empty', gettext('Nobody found.')));
  }

  function renderTree(nodes, container, depth) {
    for (const n of nodes) {
      const b = el('button', 'dept', n.name);
      b.type = 'button';
      b.style.paddingInlineStart = `${0.5 + depth}em`;
      b.title = interpolate(gettext('%(n)s people'), { n: n.member_count }, true);
      b.addEventListener('click', () => {
        department = department === n.id ? null : n.id;
        for (const x of tree.querySelectorAll('.dept')) x.classList.remove('selected');
        if (department) b.classList.add('selected');
        loadPeople();
      });
      container.append(b);
      renderTree(n.children || [], container, depth + 1);
    }
  }

  let finish;
  const done = new Promise((resolve) => {
    finish = (value) => {
      dlg.close();
      resolve(value);
    };
  });
  ok.onclick = () => finish([...chosen.values()]);
  dlg.querySelector('.people-cancel').onclick = () => finish([]);
  dlg.oncancel = () => finish([]);
  let timer = null;
  search.oninput = () => {
    clearTimeout(timer);
    timer = setTimeout(loadPeople, 250);
  };
  tree.replaceChildren();
  api('GET', '/api/v1/org/departments').then((d) => renderTree(d.departments, tree, 0)).catch(() => {});
  loadPeople();
  dlg.showModal();
  search.focus();
  return done;
}

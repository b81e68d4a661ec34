// Custom attributes and contact merging in the visitor panel, and the list's attribute filter.
//
// The tenant's definitions (GET /api/v1/kefu/attributes) give each attribute its field: text,
// number, date, a list's values, or yes/no. The contact's values come with the visitor's profile
// ('profile' from visitor.js), the conversation's from GET /api/v1/kefu/conversations/<id>/
// attributes; "Save attributes" PATCHes what changed, and the server checks every value against
// its definition. "Merge with another contact…" searches contacts and merges the chosen one into
// this one (POST /api/v1/kefu/visitors/<id>/merge). "Attribute…" in the view bar narrows the list
// to key=value (docs/api.md §11, §14).
import { api } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { fullTime } from '../weiyu/time.js';
import { handle } from './frames.js';
import { toast } from './notifications.js';
import { on, selectedConversation, state } from './store.js';
import { profileReload } from './visitor.js';
import { setFilters } from './views.js';

let defs = null; // {contact: [definition], conversation: [definition]}
async function definitions() {
  if (!defs) {
    try {
      defs = await api('GET', '/api/v1/kefu/attributes');
    } catch (e) {
      return { contact: [], conversation: [] };
    }
  }
  return defs;
}

let contactId = null; // the visitor whose attributes are shown
let conversationId = null;

function fieldFor(scope, d, value) {
  const id = `attr-${scope}-${d.key}`;
  const row = el('div', 'attr-row');
  const label = el('label', null, d.name);
  label.htmlFor = id;
  let input;
  if (d.kind === 'list' || d.kind === 'boolean') {
    input = document.createElement('select');
    input.append(new Option('—', ''));
    const options = d.kind === 'list' ? d.options.map((o) => [o, o]) : [['true', gettext('Yes')], ['false', gettext('No')]];
    for (const [v, text] of options) input.append(new Option(text, v));
  } else {
    input = document.createElement('input');
    input.type = d.kind === 'number' ? 'number' : d.kind === 'date' ? 'date' : 'text';
    if (d.kind === 'number') input.step = 'any';
    if (d.kind === 'text') input.maxLength = 500;
  }
  input.id = id;
  input.dataset.scope = scope;
  input.dataset.key = d.key;
  input.dataset.kind = d.kind;
  input.value = value == null ? '' : String(value);
  input.dataset.was = input.value;
  if (d.description) input.title = d.description;
  row.append(label, input);
  return row;
}

async function drawContact(profile) {
  const d = await definitions();
  // the same contact drawn again (a live update, often the agent's own save): its "saved" stays
  const same = profile.id === contactId;
  contactId = profile.id;
  const values = profile.attributes || {};
  $('v-attrs').replaceChildren(...d.contact.map((x) => fieldFor('contact', x, values[x.key])));
  $('attr-none').hidden = d.contact.length + d.conversation.length > 0;
  $('attr-save').hidden = !$('attr-none').hidden;
  if (!same) $('attr-status').textContent = '';
  const c = selectedConversation();
  conversationId = c && c.kind === 'visitor' ? c.id : null;
  drawConversation(d);
}

async function drawConversation(d) {
  const box = $('c-attrs');
  $('c-attrs-heading').hidden = !conversationId || !d.conversation.length;
  if (!conversationId || !d.conversation.length) {
    box.replaceChildren();
    return;
  }
  const asked = conversationId;
  try {
    const answer = await api('GET', `/api/v1/kefu/conversations/${asked}/attributes`);
    if (asked !== conversationId) return;
    box.replaceChildren(...answer.fields.map((f) => fieldFor('conversation', f, f.value)));
  } catch (e) {
    box.replaceChildren();
  }
}

function typed(input) {
  const v = input.value.trim();
  if (v === '') return null;
  if (input.dataset.kind === 'number') return Number(v);
  if (input.dataset.kind === 'boolean') return v === 'true';
  return v;
}

on('profile', drawContact);

$('attr-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const changes = { contact: {}, conversation: {} };
  for (const input of $('attr-form').querySelectorAll('[data-key]')) {
    if (input.value !== input.dataset.was) changes[input.dataset.scope][input.dataset.key] = typed(input);
  }
  const status = $('attr-status');
  try {
    if (Object.keys(changes.contact).length && contactId) {
      await api('PATCH', `/api/v1/kefu/visitors/${contactId}/attributes`, { attributes: changes.contact });
    }
    if (Object.keys(changes.conversation).length && conversationId) {
      await api('PATCH', `/api/v1/kefu/conversations/${conversationId}/attributes`, { attributes: changes.conversation });
    }
    for (const input of $('attr-form').querySelectorAll('[data-key]')) input.dataset.was = input.value;
    status.textContent = gettext('Attributes saved.');
  } catch (err) {
    status.textContent = err.message;
  }
});

handle('conversation.attributes', (f) => {
  if (f.conversation_id === conversationId && defs) drawConversation(defs);
  const c = state.convs.get(f.conversation_id);
  if (c && c.session) c.session.attributes = f.attributes;
});

// ---- merging another contact into this one -------------------------------------------------
const mergeDialog = $('contact-merge-dialog');
$('contact-merge-open').addEventListener('click', () => {
  $('cmg-q').value = '';
  $('cmg-results').replaceChildren();
  $('cmg-error').textContent = '';
  mergeDialog.showModal();
  $('cmg-q').focus();
});
$('cmg-close').addEventListener('click', () => mergeDialog.close());

async function mergeInto(other) {
  const question = interpolate(
    gettext('Merge %(other)s into this contact? Its conversations, notes, tags and attributes move here.'),
    { other: other.name },
    true,
  );
  if (!window.confirm(question)) return;
  try {
    await api('POST', `/api/v1/kefu/visitors/${contactId}/merge`, { other_id: other.id });
    mergeDialog.close();
    toast(interpolate(gettext('%(other)s was merged into this contact.'), { other: other.name }, true));
    profileReload();
  } catch (err) {
    $('cmg-error').textContent = err.message;
  }
}

$('contact-merge-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('cmg-error').textContent = '';
  const list = $('cmg-results');
  try {
    const q = encodeURIComponent($('cmg-q').value.trim());
    const answer = await api('GET', `/api/v1/kefu/contacts?q=${q}&exclude=${contactId}`);
    list.replaceChildren(
      ...answer.contacts.map((c) => {
        const li = el('li', 'merge-result');
        const who = [c.name, c.email, c.phone, c.external_id].filter(Boolean).join(' · ');
        const meta = interpolate(gettext('%(n)s conversations, last seen %(when)s'), { n: c.conversations, when: fullTime(c.last_seen) }, true);
        const button = el('button', 'btn btn-small', gettext('Merge into this contact'));
        button.type = 'button';
        button.dataset.id = c.id;
        button.addEventListener('click', () => mergeInto(c));
        li.append(el('span', null, who), el('span', 'hint', ' ' + meta + ' '), button);
        return li;
      }),
    );
    if (!answer.contacts.length) list.append(el('li', 'hint', gettext('No other contact matches.')));
  } catch (err) {
    $('cmg-error').textContent = err.message;
  }
});

// ---- the list's attribute filter -----------------------------------------------------------
const filterDialog = $('attr-filter-dialog');
let filterDefs = [];

function drawChoice() {
  const d = filterDefs.find((x) => x.key === $('af-key').value);
  const choice = $('af-choice');
  const listed = d && (d.kind === 'list' || d.kind === 'boolean');
  choice.hidden = !listed;
  $('af-value').hidden = !!listed;
  if (listed) {
    const options = d.kind === 'list' ? d.options.map((o) => [o, o]) : [['true', gettext('Yes')], ['false', gettext('No')]];
    choice.replaceChildren(new Option('—', ''), ...options.map(([v, t]) => new Option(t, v)));
  }
}

$('view-attribute').addEventListener('click', async () => {
  const d = await definitions();
  filterDefs = [...d.contact, ...d.conversation];
  const [key, value] = (state.filters.attribute || '').split(/=(.*)/s);
  $('af-key').replaceChildren(...filterDefs.map((x) => new Option(`${x.name} (${x.key})`, x.key)));
  if (key) $('af-key').value = key;
  drawChoice();
  $('af-value').value = value || '';
  $('af-choice').value = value || '';
  $('af-error').textContent = filterDefs.length ? '' : gettext('No custom attributes are defined.');
  filterDialog.showModal();
  $('af-key').focus();
});
$('af-key').addEventListener('change', drawChoice);
$('af-clear').addEventListener('click', () => {
  filterDialog.close();
  setFilters({ ...state.filters, attribute: null });
});
$('attr-filter-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const key = $('af-key').value;
  if (!key) return;
  const value = $('af-choice').hidden ? $('af-value').value.trim() : $('af-choice').value;
  filterDialog.close();
  setFilters({ ...state.filters, attribute: `${key}=${value}` });
});

// the button says which filter is on
on('filters', () => {
  const f = state.filters.attribute;
  $('view-attribute').textContent = f ? interpolate(gettext('Attribute: %(filter)s'), { filter: f }, true) : gettext('Attribute…');
  $('view-attribute').setAttribute('aria-pressed', String(!!f));
});

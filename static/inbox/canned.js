// The inbox's canned-response manager (⚡ beside the composer): search the shared responses and
// one's own, insert one into the reply, and add, edit or delete one's own. REST: docs/api.md
// "Canned responses"; shared ones are kept in the back office.
import { api } from '../weiyu/api.js';
import { $, el } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';

/**
 * `insert(text)` puts a response into the reply being written; `onChanged()` tells the
 * "/shortcut" list to load again; `toast(text)` shows an error.
 */
export function setupCanned({ insert, onChanged, toast }) {
  const dialog = $('canned-dialog');
  const form = $('cm-form');
  let items = [];
  let editing = null; // the id of the response in the form, or null for a new one
  let inserting = true; // opened from a reply box: each response can be inserted
  let seq = 0;

  async function load() {
    const mine = ++seq;
    const q = $('cm-search').value.trim();
    let data;
    try {
      data = await api('GET', '/api/v1/kefu/canned' + (q ? '?q=' + encodeURIComponent(q) : ''));
    } catch (e) {
      toast(e.message);
      return;
    }
    if (mine !== seq) return;
    items = data.canned;
    render();
  }

  function render() {
    const list = $('cm-list');
    list.replaceChildren();
    for (const c of items) {
      const li = el('li', 'cm-item');
      li.dataset.id = c.id;
      const head = el('div', 'cm-head');
      head.append(el('strong', 'cm-shortcut', '/' + c.shortcut), el('span', 'cm-title', c.title));
      if (c.category) head.append(el('span', 'cm-category', c.category));
      head.append(el('span', 'cm-owner', c.shared ? gettext('shared') : gettext('mine')));
      const text = el('p', 'cm-text', c.content);
      const actions = el('div', 'cm-actions');
      if (inserting) {
        const use = el('button', 'btn btn-small cm-insert', gettext('Insert'));
        use.type = 'button';
        use.addEventListener('click', () => {
          insert(c.content);
          dialog.close();
        });
        actions.append(use);
      }
      if (!c.shared) {
        const edit = el('button', 'btn btn-small btn-secondary cm-edit', gettext('Edit'));
        edit.type = 'button';
        edit.addEventListener('click', () => fillForm(c));
        const del = el('button', 'btn btn-small btn-secondary cm-delete', gettext('Delete'));
        del.type = 'button';
        del.addEventListener('click', async () => {
          const question = interpolate(gettext('Delete /%(s)s?'), { s: c.shortcut }, true);
          if (!confirm(question)) return;
          try {
            await api('DELETE', `/api/v1/kefu/canned/${c.id}`);
          } catch (e) {
            toast(e.message);
            return;
          }
          if (editing === c.id) fillForm(null);
          onChanged();
          load();
        });
        actions.append(edit, del);
      }
      li.append(head, text, actions);
      list.append(li);
    }
    $('cm-empty').hidden = items.length > 0;
  }

  function fillForm(c, content = '') {
    editing = c ? c.id : null;
    $('cm-form-title').textContent = c ? gettext('Edit canned response') : gettext('New canned response');
    $('cm-shortcut').value = c ? c.shortcut : '';
    $('cm-title').value = c ? c.title : '';
    $('cm-category').value = c ? c.category : '';
    $('cm-content').value = c ? c.content : content;
    $('cm-error').textContent = '';
    $('cm-new').hidden = !c;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {
      shortcut: $('cm-shortcut').value,
      title: $('cm-title').value,
      category: $('cm-category').value,
      content: $('cm-content').value,
    };
    try {
      if (editing) await api('PATCH', `/api/v1/kefu/canned/${editing}`, body);
      else await api('POST', '/api/v1/kefu/canned', body);
    } catch (err) {
      $('cm-error').textContent = err.message;
      return;
    }
    fillForm(null);
    onChanged();
    load();
  });

  let searchTimer = null;
  $('cm-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(load, 200);
  });
  $('cm-new').addEventListener('click', () => fillForm(null));
  $('cm-close').addEventListener('click', () => dialog.close());

  return {
    /**
     * Open the manager; `draft` (the reply being written) prefills a new response;
     * `canInsert`: offer "Insert" (there is a reply box to insert into).
     */
    open(draft = '', canInsert = true) {
      inserting = canInsert;
      items = [];
      $('cm-list').replaceChildren(); // not the last opening's list while this one loads
      $('cm-empty').hidden = true;
      $('cm-search').value = '';
      fillForm(null, draft.trim());
      dialog.showModal();
      load();
    },
  };
}

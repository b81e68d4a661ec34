// The inbox's language switch: auto (the browser's), 简体中文 or English, remembered on the user
// (PUT /api/v1/org/me/language). The page, its catalogue and every automatic line follow after a
// reload, which the switch does once the choice is saved.
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { toast } from './notifications.js';

const select = $('language-switch');
const saved = select.value;

select.addEventListener('change', async () => {
  select.disabled = true;
  try {
    await api('PUT', '/api/v1/org/me/language', { language: select.value });
    window.location.reload();
  } catch (e) {
    select.value = saved;
    select.disabled = false;
    toast(e.message);
  }
});

// "Export…" in the view bar: the conversations of the view the agent is looking at (its view,
// workgroup, label, channel, attribute), written by a worker as CSV or JSON
// (POST /api/v1/kefu/exports, docs/api.md §16); the dialog shows the job's progress and, once
// it is done, a link that downloads the file.
import { api } from '../weiyu/api.js';
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { state } from './store.js';
import { describe } from './views.js';

const dialog = $('list-export-dialog');
const progress = $('ed-progress');
const stateLine = $('ed-state');
const download = $('ed-download');
const POLL_MS = 1000;
let polling = null; // the job being watched

/** The export's filters for the list's current filters. */
export function exportFilters(f) {
  const out = { view: f.view || 'open' };
  if (f.workgroup) out.workgroup_id = f.workgroup;
  if (f.label) out.label = f.label;
  if (f.channel) out.channel = f.channel;
  if (f.attribute) out.attribute = f.attribute;
  return out;
}

function reset() {
  clearTimeout(polling);
  polling = null;
  progress.hidden = true;
  progress.value = 0;
  stateLine.textContent = '';
  download.hidden = true;
  download.removeAttribute('href');
  $('ed-error').textContent = '';
  $('ed-start').disabled = false;
}

function show(job) {
  progress.hidden = false;
  progress.value = job.progress;
  if (job.state === 'done') {
    stateLine.textContent = interpolate(gettext('%(n)s conversations exported.'), { n: job.total }, true);
    download.href = job.download_url;
    download.setAttribute('download', `conversations-${job.id}.${job.format}`);
    download.hidden = false;
    $('ed-start').disabled = false;
    return;
  }
  if (job.state === 'failed') {
    stateLine.textContent = '';
    $('ed-error').textContent = interpolate(gettext('The export failed: %(error)s'), { error: job.error }, true);
    $('ed-start').disabled = false;
    return;
  }
  stateLine.textContent = interpolate(gettext('Exporting… %(done)s of %(total)s'), job, true);
  polling = setTimeout(() => watch(job.id), POLL_MS);
}

async function watch(id) {
  try {
    show(await api('GET', `/api/v1/kefu/exports/${id}`));
  } catch (e) {
    $('ed-error').textContent = e.message;
    $('ed-start').disabled = false;
  }
}

$('view-export').addEventListener('click', () => {
  reset();
  $('ed-summary').textContent = describe(state.filters);
  dialog.showModal();
  $('ed-format').focus();
});
$('ed-close').addEventListener('click', () => dialog.close());
dialog.addEventListener('close', () => clearTimeout(polling));
$('export-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  reset();
  $('ed-start').disabled = true;
  try {
    const job = await api('POST', '/api/v1/kefu/exports', {
      format: $('ed-format').value,
      filters: exportFilters(state.filters),
    });
    show(job);
  } catch (err) {
    $('ed-error').textContent = err.message;
    $('ed-start').disabled = false;
  }
});

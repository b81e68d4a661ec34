// The composer: text with @mentions and "/" canned responses, internal notes, files, voice
// messages, emoji and stickers; whether the agent may write in the selected conversation.
import { api, formatSize, kindForFile, upload } from '../weiyu/api.js';
import { bindComposer } from '../weiyu/client.js';
import { $ } from '../weiyu/dom.js';
import { gettext, interpolate } from '../weiyu/i18n.js';
import { previewText } from '../weiyu/render.js';
import { setupCanned } from './canned.js';
import { client } from './connection.js';
import { closeDetails } from './layout.js';
import { scrollToBottom, showPending } from './messages.js';
import { toast } from './notifications.js';
import { config, isStaff, mutedNow, on, selectedConversation, state } from './store.js';
import { groupMembersOf } from './team.js';

const composer = $('composer');
const sendBtn = $('send');

/**
 * Add `text` on a line of its own at the end of the composer (a suggested answer, a draft); on a
 * narrow screen the side panel's drawer it came from closes, so the reply is in view.
 */
export function appendToComposer(text) {
  composer.value = composer.value ? composer.value + '\n' + text : text;
  closeDetails();
  composer.focus();
}

function renderComposer() {
  const c = selectedConversation();
  if (!c) return;
  $('internal-wrap').hidden = c.kind !== 'visitor' || !!c.closed;
  const muted = mutedNow(c);
  composer.disabled = sendBtn.disabled = muted;
  for (const b of ['emoji-btn', 'sticker-btn', 'attach-btn', 'voice-btn']) $(b).disabled = muted;
  // a messaging channel offers only what its vendor carries (session.channel.capabilities)
  const allowed = channelAttachments(c);
  $('sticker-btn').hidden = !!allowed && !allowed.includes('sticker');
  $('voice-btn').hidden = !!allowed && !allowed.includes('voice');
  $('attach-btn').hidden = !!allowed && !allowed.some((k) => k === 'image' || k === 'video' || k === 'file');
  composer.placeholder = c.closed
    ? c.kind === 'group' ? gettext('This group was dissolved.') : gettext('This conversation is closed.')
    : muted
      ? gettext('You cannot send messages here now (muted).')
      : c.kind === 'visitor'
        ? gettext('Type a reply… (Enter to send, Shift+Enter for a new line, / for canned responses)')
        : gettext('Type a reply… (Enter to send, Shift+Enter for a new line)');
}
on('header', renderComposer);
on('switch', () => {
  closePickers();
  cannedDismissed = false;
  $('internal-toggle').checked = false;
  composer.value = '';
});
on('switched', () => {
  const c = selectedConversation();
  if (window.matchMedia('(pointer: fine)').matches && !c.closed) composer.focus();
});

/** The message types the conversation's channel carries, or null when anything goes. */
function channelAttachments(c) {
  const caps = c && c.session && c.session.channel && c.session.channel.capabilities;
  return caps ? caps.attachments || [] : null;
}

// ---- composer and actions -----------------------------------------------------------------
function sendNow() {
  const c = selectedConversation();
  const content = composer.value.trim();
  if (!c || mutedNow(c) || !content) return;
  if (cannedPending()) {
    updateCanned(); // Send with the canned picker open picks nothing and sends nothing
    return;
  }
  const extra = {};
  const mentions = [...state.mentionPicks].filter(([at]) => content.includes(at)).map(([, key]) => key);
  if (mentions.length) extra.mentions = [...new Set(mentions)];
  if (c.kind === 'visitor' && $('internal-toggle').checked) extra.internal = true;
  sendItem(client.send(state.selected, content, extra));
  composer.value = '';
  state.mentionPicks.clear();
  hideMentions();
}

function sendItem(item, label) {
  if (label) item.label = label;
  showPending(item);
  scrollToBottom();
}

// ---- attachments, voice, emoji, stickers --------------------------------------------------
const uploadStatus = $('upload-status');

async function sendFile(file, kind, durationMs) {
  const id = state.selected;
  const c = state.convs.get(id);
  if (!c || mutedNow(c)) return;
  const allowed = channelAttachments(c);
  if (allowed && !allowed.includes(kind) && !(c.kind === 'visitor' && $('internal-toggle').checked)) {
    toast(gettext('This channel cannot carry this kind of file.'));
    return;
  }
  const limit = kind === 'image' ? config.max_image_bytes : config.max_file_bytes;
  if (limit && file.size > limit) {
    toast(interpolate(gettext('%(name)s is too large (the limit is %(limit)s).'), { name: file.name || '', limit: formatSize(limit) }, true));
    return;
  }
  const label = file.name || gettext('voice message');
  uploadStatus.textContent = interpolate(gettext('Uploading %(name)s…'), { name: label }, true);
  const onProgress = (x) => {
    uploadStatus.textContent = interpolate(gettext('Uploading %(name)s… %(pct)s%'), { name: label, pct: Math.round(x * 100) }, true);
  };
  let attachment;
  try {
    attachment = await upload(file, { conversationId: id, kind, durationMs, onProgress });
  } catch (e) {
    let error = e;
    // The browser's guess of the type can be wrong (say, an audio file that is not a clip):
    // anything can still go as a plain file.
    if (kind !== 'file' && e.status === 400) {
      try {
        attachment = await upload(file, { conversationId: id, kind: 'file', onProgress });
        kind = 'file';
      } catch (e2) {
        error = e2;
      }
    }
    if (!attachment) {
      uploadStatus.textContent = '';
      toast(error.message);
      return;
    }
  }
  uploadStatus.textContent = '';
  const extra = { msg_type: kind, attachment_id: attachment.id };
  if (c.kind === 'visitor' && $('internal-toggle').checked) extra.internal = true;
  sendItem(client.send(id, '', extra), previewText({ msg_type: kind, attachment, content: '' }, state.me));
}

$('attach-btn').addEventListener('click', () => $('attach-input').click());
$('attach-input').addEventListener('change', (e) => {
  const files = [...e.target.files];
  e.target.value = '';
  (async () => {
    for (const file of files) await sendFile(file, kindForFile(file));
  })();
});

let stopRecording = null;
$('voice-btn').addEventListener('click', async () => {
  const btn = $('voice-btn');
  if (stopRecording) {
    const stop = stopRecording;
    stopRecording = null;
    btn.setAttribute('aria-pressed', 'false');
    uploadStatus.textContent = '';
    const { blob, durationMs } = await stop();
    if (durationMs < 500) return; // a slip of the finger
    const ext = (blob.type.split('/')[1] || 'webm').split(';')[0];
    await sendFile(new File([blob], `voice.${ext}`, { type: blob.type }), 'voice', durationMs);
    return;
  }
  try {
    stopRecording = await startRecording();
  } catch (e) {
    toast(e.message || gettext('The microphone is not available.'));
    return;
  }
  btn.setAttribute('aria-pressed', 'true');
  uploadStatus.textContent = gettext('Recording… click 🎤 again to send.');
});

function closePickers() {
  $('emoji-picker').hidden = true;
  $('sticker-picker').hidden = true;
}

function insertAtCursor(text) {
  const start = composer.selectionStart ?? composer.value.length;
  const end = composer.selectionEnd ?? composer.value.length;
  composer.value = composer.value.slice(0, start) + text + composer.value.slice(end);
  composer.selectionStart = composer.selectionEnd = start + text.length;
  composer.focus();
}

$('emoji-btn').addEventListener('click', () => {
  const picker = $('emoji-picker');
  const open = picker.hidden;
  closePickers();
  if (!open) return;
  if (!picker.children.length) {
    for (const e of EMOJI) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'emoji';
      b.textContent = e;
      b.addEventListener('click', () => {
        insertAtCursor(e);
        picker.hidden = true;
      });
      picker.append(b);
    }
  }
  picker.hidden = false;
});

let stickers = null;
$('sticker-btn').addEventListener('click', async () => {
  const picker = $('sticker-picker');
  const open = picker.hidden;
  closePickers();
  if (!open) return;
  if (!stickers) {
    try {
      stickers = (await api('GET', '/api/v1/im/stickers')).stickers;
    } catch (e) {
      toast(e.message);
      return;
    }
    picker.replaceChildren();
    for (const st of stickers) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'sticker';
      b.title = st.name;
      const img = document.createElement('img');
      img.src = st.url;
      img.alt = st.name;
      b.append(img);
      b.addEventListener('click', () => {
        picker.hidden = true;
        const c = selectedConversation();
        if (!c || mutedNow(c)) return;
        sendItem(client.send(state.selected, '', { msg_type: 'sticker', sticker_id: st.id }), gettext('[Sticker]'));
      });
      picker.append(b);
    }
    if (!stickers.length) {
      const p = document.createElement('p');
      p.className = 'pane-empty';
      p.textContent = gettext('No stickers yet. Admins add them in the back office.');
      picker.append(p);
    }
  }
  picker.hidden = false;
});

// ---- voice recording ----------------------------------------------------------------------
/** Start recording; resolves with a stop() that resolves with {blob, durationMs}. */
async function startRecording() {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    throw new Error(gettext('This browser cannot record voice.'));
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const type = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/mp4'].find((t) => MediaRecorder.isTypeSupported(t)) || '';
  const rec = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const chunks = [];
  const started = performance.now();
  rec.ondataavailable = (e) => e.data.size && chunks.push(e.data);
  rec.start();
  return () =>
    new Promise((resolve) => {
      rec.onstop = () => {
        stream.getTracks().forEach((t) => t.stop());
        const blob = new Blob(chunks, { type: rec.mimeType || 'audio/webm' });
        resolve({ blob, durationMs: performance.now() - started });
      };
      rec.stop();
    });
}

// ---- emoji --------------------------------------------------------------------------------
const EMOJI = '😀 😂 😊 😍 🤔 😅 😭 😡 👍 👎 👏 🙏 💪 🎉 ❤️ 🔥 ✅ ❌ ⭐ 🚀 ☕ 🍵 🌹 🤝 👀 💡 📌 📎 ⏰ 🙂'.split(' ');

// ---- @mentions ----------------------------------------------------------------------------
const mentionList = $('mention-list');
let mentionChoices = [];
let mentionActive = 0;

/** People that may be @mentioned in the selected conversation whose name starts with `q`. */
async function mentionCandidates(c, q) {
  const needle = q.toLowerCase();
  if (c.kind === 'group') {
    const people = (await groupMembersOf(c))
      .map((gm) => gm.member)
      .filter((m) => m.key !== state.me && m.name.toLowerCase().includes(needle));
    if (isStaff(c.role) && gettext('all').toLowerCase().startsWith(needle)) {
      people.unshift({ key: 'all', name: gettext('all') });
    }
    return people.slice(0, 8);
  }
  if (c.kind === 'visitor') {
    // Internal notes: any colleague, who is then added to the conversation.
    const params = new URLSearchParams({ limit: '8' });
    if (q) params.set('q', q);
    const data = await api('GET', '/api/v1/org/directory?' + params);
    return data.users.filter((u) => u.key !== state.me).map((u) => ({ key: u.key, name: u.name }));
  }
  return [];
}

function hideMentions() {
  mentionList.hidden = true;
  mentionChoices = [];
}

function renderMentions() {
  mentionList.replaceChildren();
  mentionChoices.forEach((m, i) => {
    const li = document.createElement('li');
    li.role = 'option';
    li.className = 'mention-option';
    li.textContent = '@' + m.name;
    li.setAttribute('aria-selected', String(i === mentionActive));
    li.addEventListener('mousedown', (e) => {
      e.preventDefault();
      chooseMention(m);
    });
    mentionList.append(li);
  });
  mentionList.hidden = !mentionChoices.length;
}

function mentionQuery() {
  const upto = composer.value.slice(0, composer.selectionStart);
  const hit = upto.match(/(?:^|\s)@([^\s@]{0,30})$/);
  return hit ? hit[1] : null;
}

let mentionSeq = 0;
async function updateMentions() {
  const c = selectedConversation();
  const q = mentionQuery();
  if (!c || q == null || c.kind === 'direct') {
    hideMentions();
    return;
  }
  const ticket = ++mentionSeq;
  let found = [];
  try {
    found = await mentionCandidates(c, q);
  } catch (e) { /* leave the list closed */ }
  if (ticket !== mentionSeq) return;
  mentionChoices = found;
  mentionActive = 0;
  renderMentions();
}

function chooseMention(m) {
  const q = mentionQuery();
  if (q == null) return;
  const at = composer.selectionStart;
  const start = at - q.length - 1;
  const text = '@' + m.name + ' ';
  composer.value = composer.value.slice(0, start) + text + composer.value.slice(at);
  composer.selectionStart = composer.selectionEnd = start + text.length;
  state.mentionPicks.set('@' + m.name, m.key);
  if (m.key !== 'all') state.names.set(m.key, m.name);
  if (selectedIsVisitor()) $('internal-toggle').checked = true; // a colleague is pulled in as a note
  hideMentions();
  composer.focus();
}

function selectedIsVisitor() {
  const c = selectedConversation();
  return !!c && c.kind === 'visitor';
}

// ---- canned responses: "/shortcut" at the start of a line ---------------------------------
// While "/word" is being typed in a visitor conversation the picker is open: it lists what
// matches, or says that nothing does. Enter then picks (or keeps the hint up) and never sends;
// Esc dismisses the picker, after which the line is plain text again ("/" alone may be sent).
const cannedList = $('canned-list');
let canned = null; // all the agent may use, loaded on first "/"
let cannedChoices = [];
let cannedActive = 0;
let cannedDismissed = false; // Esc on this "/word": it is text, not a shortcut

function cannedQuery() {
  const upto = composer.value.slice(0, composer.selectionStart);
  const hit = upto.match(/(?:^|\n)\/([^\s/]{0,32})$/);
  return hit ? hit[1].toLowerCase() : null;
}

/** Whether Enter belongs to the canned picker: a "/word" is typed and was not dismissed. */
function cannedPending() {
  return !cannedDismissed && selectedIsVisitor() && cannedQuery() != null;
}

function hideCanned() {
  cannedList.hidden = true;
  cannedChoices = [];
}

function cannedHint(q) {
  if (canned == null) return gettext('Loading canned responses…');
  if (!canned.length) {
    return gettext('No canned responses yet: add one with ⚡ beside the reply. Esc to cancel.');
  }
  return interpolate(gettext('No canned response matches “/%(q)s”. Esc to cancel.'), { q }, true);
}

function renderCanned(q) {
  cannedList.replaceChildren();
  cannedChoices.forEach((c, i) => {
    const li = document.createElement('li');
    li.role = 'option';
    li.className = 'mention-option canned-option';
    li.setAttribute('aria-selected', String(i === cannedActive));
    const key = document.createElement('strong');
    key.textContent = '/' + c.shortcut;
    const title = document.createElement('span');
    title.textContent = ' ' + c.title + (c.shared ? '' : ' · ' + gettext('mine'));
    li.append(key, title);
    li.addEventListener('mousedown', (e) => {
      e.preventDefault();
      chooseCanned(c);
    });
    cannedList.append(li);
  });
  if (!cannedChoices.length) {
    const hint = document.createElement('li');
    hint.className = 'canned-hint';
    hint.id = 'canned-hint';
    hint.textContent = cannedHint(q);
    cannedList.append(hint);
  }
  cannedList.hidden = false;
}

let cannedLoading = null; // the one request for the list, shared by the keystrokes that wait
async function updateCanned() {
  const id = state.selected;
  if (!cannedPending()) {
    hideCanned();
    return;
  }
  if (!canned) {
    renderCanned(cannedQuery()); // "loading", so that Enter meanwhile visibly does not send
    cannedLoading =
      cannedLoading ||
      api('GET', '/api/v1/kefu/canned').then(
        (data) => data.canned,
        () => [],
      );
    canned = await cannedLoading;
  }
  // what is typed *now*: a keystroke (or a choice) may have come while the list was loading, and
  // another conversation may be on screen (by id: a frame replaces the conversation's object)
  const q = cannedQuery();
  if (!cannedPending() || state.selected !== id) {
    hideCanned();
    return;
  }
  cannedChoices = canned
    .filter((x) => x.shortcut.toLowerCase().startsWith(q) || x.title.toLowerCase().includes(q))
    .slice(0, 8);
  cannedActive = 0;
  renderCanned(q);
}

function chooseCanned(c) {
  const q = cannedQuery();
  if (q == null) return;
  const at = composer.selectionStart;
  const start = at - q.length - 1;
  composer.value = composer.value.slice(0, start) + c.content + composer.value.slice(at);
  composer.selectionStart = composer.selectionEnd = start + c.content.length;
  hideCanned();
  composer.focus();
}

const cannedManager = setupCanned({
  toast,
  insert(text) {
    const at = composer.selectionStart ?? composer.value.length;
    const end = composer.selectionEnd ?? at;
    composer.value = composer.value.slice(0, at) + text + composer.value.slice(end);
    composer.selectionStart = composer.selectionEnd = at + text.length;
    composer.dispatchEvent(new Event('input'));
    composer.focus();
  },
  onChanged() {
    canned = null;
    cannedLoading = null;
  },
});
$('canned-btn').addEventListener('click', () => cannedManager.open(composer.value));
$('canned-link').addEventListener('click', () => cannedManager.open('', false));

// Runs before the composer's own Enter handling (capture on the form).
$('composer-form').addEventListener('keydown', (e) => {
  if (e.target === composer && !e.isComposing && cannedPending()) {
    const picking = !cannedList.hidden && cannedChoices.length > 0;
    if (picking && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      cannedActive = (cannedActive + (e.key === 'ArrowDown' ? 1 : -1) + cannedChoices.length) % cannedChoices.length;
      renderCanned(cannedQuery());
    } else if (picking && (e.key === 'Enter' || e.key === 'Tab')) {
      chooseCanned(cannedChoices[cannedActive]);
    } else if (e.key === 'Enter' && !e.shiftKey) {
      updateCanned(); // nothing to pick: the hint stays (or comes back), nothing is sent
    } else if (e.key === 'Escape') {
      cannedDismissed = true;
      hideCanned();
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    return;
  }
  if (mentionList.hidden || !mentionChoices.length) return;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    mentionActive = (mentionActive + (e.key === 'ArrowDown' ? 1 : -1) + mentionChoices.length) % mentionChoices.length;
    renderMentions();
  } else if (e.key === 'Enter' || e.key === 'Tab') {
    chooseMention(mentionChoices[mentionActive]);
  } else if (e.key === 'Escape') {
    hideMentions();
  } else {
    return;
  }
  e.preventDefault();
  e.stopPropagation();
}, true);
composer.addEventListener('input', updateMentions);
composer.addEventListener('input', () => {
  if (cannedQuery() == null) cannedDismissed = false; // the "/word" is gone: the next "/" is one
  updateCanned();
});
// (a click on Send blurs and refocuses the composer: the picker stays for what Send said)
composer.addEventListener('blur', () => setTimeout(() => document.activeElement !== composer && hideCanned(), 150));
composer.addEventListener('blur', () => setTimeout(hideMentions, 150));

bindComposer({
  form: $('composer-form'),
  textarea: composer,
  send: sendNow,
  onInput: () => {
    if (state.selected != null && composer.value.trim()) client.typing(state.selected);
  },
});


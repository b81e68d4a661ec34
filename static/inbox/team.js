// Team messaging parts of the inbox: REST calls, message bodies (files, images, voice, video,
// stickers, mentions), the people picker, group details, uploads, voice recording and search.
// Everything from the server goes into the DOM as text or as attributes of media elements.
const { gettext, interpolate } = window;

// ---- REST ----------------------------------------------------------------------------------
function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : '';
}

/** JSON API call; rejects with an Error carrying the server's `detail` as message. */
export async function api(method, path, body) {
  const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body instanceof FormData) {
    opts.body = body;
    opts.headers['X-CSRFToken'] = csrfToken();
  } else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers['Content-Type'] = 'application/json';
    opts.headers['X-CSRFToken'] = csrfToken();
  } else if (method !== 'GET') {
    opts.headers['X-CSRFToken'] = csrfToken();
  }
  const r = await fetch(path, opts);
  if (r.status === 204) return null;
  let data = null;
  try {
    data = await r.json();
  } catch (e) { /* not JSON */ }
  if (!r.ok) {
    const detail = data && (typeof data.detail === 'string' ? data.detail : JSON.stringify(data.detail));
    throw Object.assign(new Error(detail || gettext('Something went wrong. Try again.')), {
      code: data && data.error,
      status: r.status,
    });
  }
  return data;
}

/** Upload with progress; resolves with the attachment. `onProgress(0..1)`. */
export function upload(file, { conversationId, kind, durationMs, onProgress }) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('file', file, file.name || 'file');
    form.append('kind', kind);
    if (conversationId != null) form.append('conversation_id', String(conversationId));
    if (durationMs != null) form.append('duration_ms', String(Math.round(durationMs)));
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/im/files');
    xhr.setRequestHeader('X-CSRFToken', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (e) { /* not JSON */ }
      if (xhr.status === 201) resolve(data);
      else {
        reject(Object.assign(new Error((data && data.detail) || gettext('The upload failed.')), {
          status: xhr.status,
          code: data && data.error,
        }));
      }
    };
    xhr.onerror = () => reject(new Error(gettext('The upload failed.')));
    xhr.send(form);
  });
}

/** The message type for a chosen file, from its MIME type (the server checks the content). */
export function kindForFile(file) {
  const t = file.type || '';
  if (/^image\/(png|jpeg|gif|webp)$/.test(t)) return 'image';
  if (t.startsWith('video/')) return 'video';
  if (t.startsWith('audio/')) return 'voice';
  return 'file';
}

export function formatSize(bytes) {
  if (bytes == null) return '';
  if (bytes < 1024) return interpolate(gettext('%(n)s B'), { n: bytes }, true);
  if (bytes < 1024 * 1024) return interpolate(gettext('%(n)s KB'), { n: (bytes / 1024).toFixed(1) }, true);
  return interpolate(gettext('%(n)s MB'), { n: (bytes / 1024 / 1024).toFixed(1) }, true);
}

function formatDuration(ms) {
  const s = Math.round((ms || 0) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

// ---- message bodies -----------------------------------------------------------------------
const preview = () => document.getElementById('image-preview');

export function openPreview(url, name) {
  const dlg = preview();
  const img = dlg.querySelector('img');
  img.src = url;
  img.alt = name || '';
  dlg.querySelector('.preview-name').textContent = name || '';
  dlg.querySelector('.preview-download').href = url;
  dlg.showModal();
}

/** Text with @mentions of `names` (member key -> name) highlighted. */
function mentionText(container, content, names) {
  const parts = [];
  const wanted = [...names].filter(Boolean).map((n) => '@' + n);
  if (!wanted.length) {
    container.textContent = content;
    return;
  }
  let rest = content;
  while (rest) {
    let at = -1;
    let hit = '';
    for (const w of wanted) {
      const i = rest.indexOf(w);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        hit = w;
      }
    }
    if (at < 0) {
      parts.push(document.createTextNode(rest));
      break;
    }
    if (at > 0) parts.push(document.createTextNode(rest.slice(0, at)));
    parts.push(el('span', 'mention', hit));
    rest = rest.slice(at + hit.length);
  }
  container.replaceChildren(...parts);
}

/**
 * Fill `.msg-text` of a message element for any message type. `ctx.nameOf(key)` gives member
 * names (for @mentions), `ctx.me` our key.
 */
export function fillBody(msgEl, m, ctx) {
  const box = msgEl.querySelector('.msg-text');
  box.replaceChildren();
  msgEl.classList.toggle('internal', !!m.internal);
  msgEl.classList.toggle('recalled', !!m.recalled);
  msgEl.dataset.type = m.msg_type;
  if (m.recalled) {
    box.textContent = m.sender && m.sender.key === ctx.me
      ? gettext('You recalled a message')
      : interpolate(gettext('%(name)s recalled a message'), { name: (m.sender && m.sender.name) || '' }, true);
    return;
  }
  const a = m.attachment;
  if (m.msg_type === 'image' && a) {
    const img = el('img', 'msg-image');
    img.src = a.thumbnail_url || a.url;
    img.alt = a.name;
    img.loading = 'lazy';
    if (a.width && a.height) {
      const scale = Math.min(1, 240 / Math.max(a.width, a.height));
      img.width = Math.round(a.width * scale);
      img.height = Math.round(a.height * scale);
    }
    const btn = el('button', 'msg-image-btn');
    btn.type = 'button';
    btn.title = gettext('View the picture');
    btn.append(img);
    btn.addEventListener('click', () => openPreview(a.url, a.name));
    box.append(btn);
  } else if (m.msg_type === 'voice' && a) {
    const audio = el('audio', 'msg-audio');
    audio.controls = true;
    audio.preload = 'none';
    audio.src = a.url;
    box.append(audio, el('span', 'msg-duration', formatDuration(a.duration_ms)));
  } else if (m.msg_type === 'video' && a) {
    const video = el('video', 'msg-video');
    video.controls = true;
    video.preload = 'metadata';
    video.src = a.url;
    box.append(video);
  } else if (m.msg_type === 'file' && a) {
    const card = el('a', 'file-card');
    card.href = a.url;
    card.download = a.name;
    card.append(el('span', 'file-icon', '📄'), el('span', 'file-name', a.name), el('span', 'file-size', formatSize(a.size)));
    box.append(card);
  } else if (m.msg_type === 'sticker' && m.sticker) {
    const img = el('img', 'msg-sticker');
    img.src = m.sticker.url;
    img.alt = m.sticker.name;
    img.title = m.sticker.name;
    box.append(img);
  }
  if (m.content) {
    const text = el('div', 'msg-caption');
    const names = new Set();
    for (const key of m.mentions || []) {
      if (key === 'all') names.add(gettext('all'));
      else names.add(ctx.nameOf(key));
    }
    mentionText(text, m.content, names);
    if (box.childNodes.length) box.append(text);
    else mentionText(box, m.content, names);
  }
  const mentioned = (m.mentions || []).includes(ctx.me) || (m.mentions || []).includes('all');
  msgEl.classList.toggle('mentions-me', mentioned && !(m.sender && m.sender.key === ctx.me));
}

/** A one-line preview of a message for the conversation list. */
export function previewText(m, me) {
  if (!m) return '';
  if (m.recalled || m.msg_type === 'recall') return gettext('A message was recalled');
  const label = {
    image: gettext('[Picture]'),
    voice: gettext('[Voice]'),
    video: gettext('[Video]'),
    file: gettext('[File]'),
    sticker: gettext('[Sticker]'),
  }[m.msg_type];
  const text = label ? (label + ' ' + (m.content || (m.attachment && m.attachment.name) || '')).trim() : m.content;
  if (m.internal) return interpolate(gettext('Note: %(text)s'), { text }, true);
  if (m.sender && m.sender.key === me) return interpolate(gettext('You: %(text)s'), { text }, true);
  if (m.sender && m.sender.type === 'agent' && m.conversation_kind === 'group') return `${m.sender.name}: ${text}`;
  return text;
}

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

// ---- voice recording ----------------------------------------------------------------------
/** Start recording; resolves with a stop() that resolves with {blob, durationMs}. */
export async function startRecording() {
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
export const EMOJI = '😀 😂 😊 😍 🤔 😅 😭 😡 👍 👎 👏 🙏 💪 🎉 ❤️ 🔥 ✅ ❌ ⭐ 🚀 ☕ 🍵 🌹 🤝 👀 💡 📌 📎 ⏰ 🙂'.split(' ');

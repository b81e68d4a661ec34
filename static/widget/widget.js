/*
 * Weiyu widget loader. Embedded on a tenant's website as
 *   <script src="https://<tenant-domain>/widget.js" data-channel="KEY" async></script>
 * It only adds a launcher button and an iframe; the chat itself runs inside the iframe, on the
 * tenant's domain. A classic script (not a module) and ES2017, because it runs on pages we do
 * not control. All styles are inline so nothing leaks into, or in from, the host page's CSS.
 */
(function () {
  'use strict';
  if (window.Weiyu && window.Weiyu.__weiyu) return; // snippet pasted twice

  var script = document.currentScript;
  if (!script || !script.getAttribute('data-channel')) {
    var all = document.querySelectorAll('script[data-channel]');
    for (var i = 0; i < all.length; i++) {
      if (/\/widget\.js(\?|#|$)/.test(all[i].src)) script = all[i];
    }
    script = script || all[0];
  }
  if (!script) return;
  var channel = script.getAttribute('data-channel');
  if (!channel) return;

  var src = new URL(script.src, location.href);
  var base = new URL('./', src); // the directory widget.js is served from
  var origin = base.origin;

  function labels(language) {
    return /^zh\b/i.test(language || '')
      ? { open: '打开在线客服', close: '关闭在线客服', title: '在线客服' }
      : { open: 'Open chat', close: 'Close chat', title: 'Customer service chat' };
  }
  var T = labels(navigator.language);
  var locale = null; // what Weiyu.setLocale gave, sent to the frame once it is ready

  var Z = '2147483000';
  var accent = '#1f6feb';
  var isOpen = false;
  var unread = 0;
  var listeners = {};
  var identity = null; // what Weiyu.identify gave: {identity, hmac}, sent to each frame load
  var identitySent = false;
  var narrow = window.matchMedia('(max-width: 479px)');

  function css(el, styles) {
    for (var k in styles) el.style.setProperty(k, styles[k], 'important');
  }

  function emit(event, data) {
    (listeners[event] || []).slice().forEach(function (fn) {
      try { fn(data); } catch (e) { console.error(e); }
    });
  }

  // ---- launcher ---------------------------------------------------------------------------
  var launcher = document.createElement('button');
  launcher.id = 'weiyu-launcher';
  launcher.type = 'button';
  launcher.setAttribute('aria-label', T.open);
  launcher.setAttribute('aria-controls', 'weiyu-frame');
  launcher.setAttribute('aria-expanded', 'false');
  css(launcher, {
    position: 'fixed', right: '20px', bottom: '20px', width: '56px', height: '56px',
    margin: '0', padding: '0', border: '0', 'border-radius': '50%', cursor: 'pointer',
    background: accent, color: '#fff', 'box-shadow': '0 6px 20px rgba(15,23,42,.25)',
    display: 'flex', 'align-items': 'center', 'justify-content': 'center',
    'z-index': Z, transition: 'transform .15s ease', 'line-height': '0',
  });
  launcher.addEventListener('mouseenter', function () { css(launcher, { transform: 'scale(1.06)' }); });
  launcher.addEventListener('mouseleave', function () { css(launcher, { transform: 'none' }); });

  var SVG = 'http://www.w3.org/2000/svg';
  function icon(d) {
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', '26');
    svg.setAttribute('height', '26');
    svg.setAttribute('aria-hidden', 'true');
    var path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    path.setAttribute('fill', 'currentColor');
    svg.appendChild(path);
    return svg;
  }
  var chatIcon = icon('M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z');
  var closeIcon = icon('M18.3 5.7a1 1 0 0 0-1.4 0L12 10.6 7.1 5.7a1 1 0 1 0-1.4 1.4l4.9 4.9-4.9 4.9a1 1 0 1 0 1.4 1.4l4.9-4.9 4.9 4.9a1 1 0 0 0 1.4-1.4L13.4 12l4.9-4.9a1 1 0 0 0 0-1.4z');
  css(closeIcon, { display: 'none' });
  launcher.appendChild(chatIcon);
  launcher.appendChild(closeIcon);

  var badge = document.createElement('span');
  badge.setAttribute('aria-hidden', 'true');
  css(badge, {
    position: 'absolute', top: '-4px', right: '-4px', 'min-width': '20px', height: '20px',
    padding: '0 6px', 'box-sizing': 'border-box', 'border-radius': '10px', background: '#e5484d',
    color: '#fff', font: '600 12px/20px system-ui,-apple-system,"Segoe UI",sans-serif',
    'text-align': 'center', display: 'none', border: '2px solid #fff',
  });
  launcher.appendChild(badge);

  // ---- iframe -----------------------------------------------------------------------------
  var frameUrl = new URL('widget/frame/', base);
  frameUrl.searchParams.set('channel', channel);
  frameUrl.searchParams.set('lang', navigator.language || '');
  frameUrl.searchParams.set('page_url', location.href);
  frameUrl.searchParams.set('referrer', document.referrer || '');
  frameUrl.searchParams.set('page_title', (document.title || '').slice(0, 200));

  var frame = document.createElement('iframe');
  frame.id = 'weiyu-frame';
  frame.title = T.title;
  frame.src = frameUrl.href;
  frame.setAttribute('allow', 'clipboard-write');
  frame.setAttribute('aria-hidden', 'true');
  css(frame, {
    position: 'fixed', border: '0', margin: '0', padding: '0', background: '#fff',
    'color-scheme': 'normal', 'z-index': Z, display: 'none', opacity: '0',
    transition: 'opacity .18s ease, transform .18s ease', transform: 'translateY(12px)',
  });

  function layout() {
    if (narrow.matches) {
      css(frame, {
        top: '0', left: '0', right: '0', bottom: '0', width: '100%', height: '100%',
        'max-height': 'none', 'border-radius': '0', 'box-shadow': 'none',
      });
      // The frame has its own close button; the launcher would cover its composer.
      css(launcher, { display: isOpen ? 'none' : 'flex' });
    } else {
      css(frame, {
        top: 'auto', left: 'auto', right: '20px', bottom: '88px', width: '380px',
        height: 'min(640px, calc(100% - 108px))', 'max-height': '640px',
        'border-radius': '16px', 'box-shadow': '0 12px 48px rgba(15,23,42,.22)',
      });
      css(launcher, { display: 'flex' });
    }
  }

  function tellFrame(msg) {
    if (frame.contentWindow) frame.contentWindow.postMessage(msg, origin);
  }

  function setOpen(open) {
    if (open === isOpen) return;
    isOpen = open;
    layout();
    launcher.setAttribute('aria-expanded', String(open));
    launcher.setAttribute('aria-label', open ? T.close : T.open);
    frame.setAttribute('aria-hidden', String(!open));
    css(chatIcon, { display: open ? 'none' : 'block' });
    css(closeIcon, { display: open ? 'block' : 'none' });
    if (open) {
      css(frame, { display: 'block' });
      requestAnimationFrame(function () {
        requestAnimationFrame(function () { css(frame, { opacity: '1', transform: 'none' }); });
      });
      try { frame.focus(); } catch (e) { /* ignore */ }
    } else {
      var hadFocus = document.activeElement === frame;
      css(frame, { opacity: '0', transform: 'translateY(12px)', display: 'none' });
      if (hadFocus) launcher.focus(); // keep keyboard users where they were
    }
    tellFrame({ source: 'weiyu-host', event: 'visibility', open: open });
    emit(open ? 'open' : 'close');
  }

  function sendIdentity() {
    if (!identity || identitySent) return;
    identitySent = true;
    tellFrame({ source: 'weiyu-host', event: 'identify', identity: identity.identity, hmac: identity.hmac });
  }

  function setUnread(n) {
    unread = Math.max(0, n | 0);
    badge.textContent = unread > 99 ? '99+' : String(unread);
    css(badge, { display: unread > 0 ? 'block' : 'none' });
    launcher.setAttribute('aria-label', (isOpen ? T.close : T.open) + (unread ? ' (' + unread + ')' : ''));
    emit('unread', unread);
  }

  launcher.addEventListener('click', function () { setOpen(!isOpen); });
  var frameReady = false;
  frame.addEventListener('load', function () {
    frameReady = false;
    identitySent = false; // a reloaded frame (language switch) is told again
    tellFrame({ source: 'weiyu-host', event: 'visibility', open: isOpen });
  });
  if (narrow.addEventListener) narrow.addEventListener('change', layout);
  else if (narrow.addListener) narrow.addListener(layout);

  // The visitor's token, kept here (the host page's own storage) only when the browser blocks
  // the chat frame's storage: the frame asks for it when it starts (docs/protocol.md §1).
  var TOKEN_KEY = 'weiyu.token.' + channel;
  function hostToken() {
    try { return localStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  function keepToken(token) {
    try { localStorage.setItem(TOKEN_KEY, token); } catch (e) { /* blocked here too */ }
  }

  window.addEventListener('message', function (e) {
    if (e.source !== frame.contentWindow || e.origin !== origin) return;
    var d = e.data;
    if (!d || typeof d !== 'object' || d.source !== 'weiyu') return;
    if (d.event === 'token.request') tellFrame({ source: 'weiyu-host', event: 'token', token: hostToken() });
    else if (d.event === 'token') {
      if (typeof d.token === 'string' && d.token.length <= 512) keepToken(d.token);
    } else if (d.event === 'unread') setUnread(d.count);
    else if (d.event === 'close') setOpen(false);
    else if (d.event === 'open') setOpen(true);
    else if (d.event === 'identified') emit('identified');
    else if (d.event === 'identify_failed') emit('identify_failed', String(d.message || ''));
    else if (d.event === 'message' && d.message && typeof d.message === 'object') {
      emit('message', d.message);
    } else if (d.event === 'ready') {
      // Only a plain #rgb/#rrggbb colour; anything else stays the default.
      if (typeof d.color === 'string' && /^#[0-9a-f]{3}([0-9a-f]{3})?$/i.test(d.color)) {
        accent = d.color;
        css(launcher, { background: accent });
      }
      tellFrame({ source: 'weiyu-host', event: 'visibility', open: isOpen });
      frameReady = true;
      if (locale !== null) tellFrame({ source: 'weiyu-host', event: 'locale', language: locale });
      sendIdentity();
      emit('ready');
    }
  });

  function mount() {
    layout();
    document.body.appendChild(frame);
    document.body.appendChild(launcher);
  }
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);

  window.Weiyu = {
    __weiyu: true,
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    toggle: function () { setOpen(!isOpen); },
    isOpen: function () { return isOpen; },
    unread: function () { return unread; },
    /**
     * Say who the logged-in customer is: identity {id, name?, email?, phone?, attributes?} and
     * hmac, the hex HMAC-SHA256 of id under the channel's identity secret, computed by your
     * server. With a valid hmac every browser of the customer shares one contact and history.
     * Events 'identified' or 'identify_failed' (message) follow.
     */
    identify: function (who, hmac) {
      if (!who || typeof who !== 'object') return;
      identity = { identity: who, hmac: typeof hmac === 'string' ? hmac : '' };
      identitySent = false;
      if (frameReady) sendIdentity();
    },
    /**
     * The widget's language: a code such as 'en' or 'zh-hans' (one the widget offers; anything
     * else, or '', follows the browser). The visitor's own choice in the widget is replaced, and
     * kept for their next visit.
     */
    setLocale: function (language) {
      locale = typeof language === 'string' ? language.slice(0, 16) : '';
      T = labels(locale || navigator.language);
      frame.title = T.title;
      launcher.setAttribute('aria-label', (isOpen ? T.close : T.open) + (unread ? ' (' + unread + ')' : ''));
      if (frameReady) tellFrame({ source: 'weiyu-host', event: 'locale', language: locale });
    },
    /**
     * Events: 'ready', 'open', 'close', 'unread' (count), 'message' ({conversation_id,
     * sender_name, sender_type, type, text, created_at}: an agent's or the robot's new message),
     * 'identified', 'identify_failed' (message). Returns a function that removes the listener.
     */
    on: function (event, fn) {
      if (typeof fn !== 'function') return function () {};
      (listeners[event] = listeners[event] || []).push(fn);
      return function () {
        listeners[event] = (listeners[event] || []).filter(function (f) { return f !== fn; });
      };
    },
  };
})();
